"""Headers on every console response (pages, redirects, errors, static files).

    Content-Security-Policy   scripts, styles and images from keyturn only; no inline script, no inline
                              style attribute, no framing, forms post only here, no <base>
    X-Frame-Options: DENY     the same for browsers that predate frame-ancestors
    X-Content-Type-Options: nosniff, Referrer-Policy: no-referrer (no console URL leaks to a link target)
    Cross-Origin-Opener-Policy: same-origin
    Cache-Control: no-store   pages hold per-user data; static files get ``no-cache`` (revalidated)

A route's own value wins, except the CSP, which no console page may loosen.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
STATIC_CACHE = b"no-cache"


class ConsoleHeaders:
    """ASGI middleware adding the headers above (see the module docstring)."""

    def __init__(self, app: ASGIApp, static_prefix: str = "/static/") -> None:
        self.app = app
        self.static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        root = str(scope.get("root_path", ""))
        rel = path[len(root):] if root and path.startswith(root) else path
        cache = STATIC_CACHE if rel.startswith(self.static_prefix) else b"no-store"

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers") or []
                           if k.lower() != b"content-security-policy"]
                have = {k.lower() for k, _v in headers}
                headers.append((b"content-security-policy", CSP.encode()))
                headers += [(k, v) for k, v in HEADERS if k not in have]
                if b"cache-control" not in have:
                    headers.append((b"cache-control", cache))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


__all__ = ["CSP", "HEADERS", "ConsoleHeaders"]
