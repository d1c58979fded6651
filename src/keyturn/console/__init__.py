"""The web console: server-rendered pages on the API's own vault, roles, tokens and audit, served by
`keyturn serve` at ``/console/`` (``/`` redirects there).

Layout (one job per module)::

    app.py               the console sub-app, mounted on the API app (`mount`): HTML error pages,
                         static files, the routers listed in `pages.ROUTERS`
    session.py           sign-in sessions (`SessionStore`), the `Authenticator` seam (token today, OIDC
                         later) and the dependencies `current_session` / `require_session`
    csrf.py              `check_csrf`, the dependency of every state-changing POST
    forms.py             urlencoded form bodies (`read_form`, `Form.one/opt`)
    security_headers.py  CSP, X-Frame-Options, nosniff, no-referrer, no-store on every response
    render.py            the Jinja2 environment and `render`
    pages/               one module per page group, each a `router` with paths relative to /console
    templates/           Jinja2 templates (`base.html` first); static/ CSS and scripts (no inline ones)

Interfaces pages rely on (stable):

- ``render(request, template_name, context, status_code=200) -> HTMLResponse`` adds ``principal``,
  ``session``, ``csrf_token`` / ``csrf_field()``, ``nav``, ``flashes``, ``can(permission)``,
  ``static(name)`` and the filters ``when`` / ``ago`` (`keyturn.console.render`).
- ``Depends(require_session(min_role=None, permission=None))`` → the live `ConsoleSession`
  (``.principal`` is the API's `Principal`, ``.actor`` the audit actor, ``.flash(msg, kind)``); no
  session → 303 to ``/console/signin?next=<this page>``; role below `min_role` (ranked consumer <
  auditor < operator < admin) or without `permission` (the API's table in `keyturn.api.auth`) → 403
  page, audited as ``api.denied``.
- ``Depends(check_csrf)`` on every POST (form field ``csrf_token`` or header ``X-CSRF-Token``): missing
  or wrong → 403 page, the route does not run.
- ``pages.ROUTERS``: module paths, each exposing ``router``; routes are relative to ``/console``
  (``@router.get("/rotations/{rotation_id}")``). Business logic stays in the modules the API and CLI call.
- ``templates/base.html``: blocks ``title``, ``content`` (also ``head``, ``scripts``); nav links to
  Dashboard, Accounts, Audit, Schedules, Profiles (those the role may use), and Sign out.
- Inside a page, the API's `ApiContext` is ``keyturn.api.auth.context(request)`` (``ctx.db(fn, ...)`` runs
  a vault call off the event loop), as in the API's routes.
- Errors: raise ``HTTPException(code, "message")`` or let a `KeyturnError` through: the console answers
  with its error page (the API's status table, `keyturn.api.app.ERROR_STATUS`) and the message's first line.

Security: see `keyturn.console.session` (cookie flags, expiry, the `Secure`/HTTPS rule),
`keyturn.console.csrf` and `keyturn.console.security_headers`. No secret appears in a URL, a log line or
a page, except the explicit reveal view.
"""

from __future__ import annotations

from keyturn.console.app import build, mount

__all__ = ["build", "mount"]
