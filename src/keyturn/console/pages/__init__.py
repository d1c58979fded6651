"""The console's pages: one module per page group, each exposing ``router`` (a FastAPI `APIRouter`
whose paths are relative to ``/console``: ``@router.get("/accounts")`` serves ``/console/accounts``).

`ROUTERS` lists the modules `keyturn.console.app` includes, in order; a new page module adds itself here.
"""

from __future__ import annotations

ROUTERS: list[str] = [
    "keyturn.console.pages.signin",
    "keyturn.console.pages.dashboard",
    "keyturn.console.pages.accounts",
    "keyturn.console.pages.schedules",
    "keyturn.console.pages.profiles",
    "keyturn.console.pages.account_detail",
    "keyturn.console.pages.rotation_detail",
    "keyturn.console.pages.reveal",
    "keyturn.console.pages.audit",
]

__all__ = ["ROUTERS"]
