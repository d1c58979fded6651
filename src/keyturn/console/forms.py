"""Console form bodies: ``application/x-www-form-urlencoded`` only, parsed once per request.

Every console form is urlencoded (no uploads), so keyturn parses it with the standard library instead of
pulling in a multipart parser. A body of another type, or with more than `MAX_FIELDS` fields, is
refused with 415 / 413 before any field is looked at.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import HTTPException, Request

MAX_FIELDS = 2_000
URLENCODED = "application/x-www-form-urlencoded"


class Form(dict[str, list[str]]):
    """Field name → every value sent (checkbox lists repeat a name)."""

    def one(self, name: str, default: str = "") -> str:
        """The first value of `name`, else `default`."""
        values = self.get(name)
        return values[0] if values else default

    def opt(self, name: str) -> str | None:
        """The first value of `name` stripped, None when missing or blank."""
        value = self.one(name).strip()
        return value or None


async def read_form(request: Request) -> Form:
    """The request's form (parsed once, cached on the request)."""
    cached = getattr(request.state, "console_form", None)
    if isinstance(cached, Form):
        return cached
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if body and kind != URLENCODED:
        raise HTTPException(415, f"forms are sent as {URLENCODED}")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS,
                          strict_parsing=False)
    except UnicodeDecodeError:
        raise HTTPException(400, "the form is not UTF-8") from None
    except ValueError:
        raise HTTPException(413, f"the form has more than {MAX_FIELDS} fields") from None
    form = Form()
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    request.state.console_form = form
    return form


__all__ = ["MAX_FIELDS", "Form", "read_form"]
