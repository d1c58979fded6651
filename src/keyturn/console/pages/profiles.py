"""Rotation profiles: which accounts have one, and viewing / setting one record's profile.

``GET /profiles`` lists the managed accounts (`keyturn.accounts_view`, searchable, paged) with their
target and resource; ``GET /profiles/{ref}`` shows one record's profile as a form (empty for a user
record without one yet). ``POST /profiles/{ref}`` (operator or admin, CSRF) goes through what `keyturn
rotation set RECORD` runs — `keyturn.sites.profile_options` for the site, then
`keyturn.engine.profile.set_profile` — so every check and error text is the CLI's, and a refused form is
shown again with its values and the error, nothing saved. As ``PUT /records/{ref}/rotation``, an
enable-secret profile links the admin record to it only when an admin sets it (it changes the admin
record). Options are one field per allowed option (`PROFILE_OPTIONS`), so a new option appears here
without a change to the page.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from keyturn.accounts_view import AccountQuery, list_accounts
from keyturn.api.auth import Permission, context
from keyturn.console.csrf import check_csrf
from keyturn.console.forms import Form, read_form
from keyturn.console.pages.accounts import PER_PAGE, filter_expression, titles
from keyturn.console.render import render
from keyturn.console.session import PREFIX, ConsoleSession, require_session
from keyturn.engine.accounts import ENABLE_TARGET, link_enable_secret
from keyturn.engine.profile import META_KEY, PROFILE_OPTIONS, RotationProfile, set_profile
from keyturn.errors import ConfigError, KeyturnError
from keyturn.sites import OPTION as SITE_OPTION
from keyturn.sites import profile_options
from keyturn.targets.registry import kinds
from keyturn.vault import Vault

router = APIRouter()

REFS = ("resource", "admin", "configuration")
TEXT = ("target", *REFS, "policy", "verify_with", "max_attempts")
MAX_ATTEMPTS = (1, 20)                # as `keyturn rotation set --max-attempts`
OPTIONS = tuple(name for name in PROFILE_OPTIONS if name != SITE_OPTION)
Reader = Annotated[ConsoleSession, Depends(require_session(permission=Permission.ROTATION_READ))]
Writer = Annotated[ConsoleSession, Depends(require_session(permission=Permission.ROTATION_WRITE))]
Ref = Annotated[str, Path(max_length=512)]


def _field_of(message: str) -> str:
    lowered = message.lower()
    for name in (*OPTIONS, "site"):
        if f"option {name}" in lowered or f"option '{name}'" in lowered:
            return name
    for word, name in (("--resource", "resource"), ("resource", "resource"), ("--admin", "admin"),
                       ("admin", "admin"), ("policy", "policy"), ("--verify-with", "verify_with"),
                       ("site", "site"), ("max-attempts", "max_attempts"), ("target", "target"),
                       ("configuration", "configuration")):
        if word in lowered:
            return name
    return ""


def _load(vault: Vault, ref: str) -> tuple[Any, dict[str, str]]:
    """The record and its profile as form values (empty when it has none); references shown as titles."""
    rec = vault.get(ref)
    values = dict.fromkeys((*TEXT, *OPTIONS, "site"), "")
    values["max_attempts"] = "3"
    raw = rec.meta.get(META_KEY)
    if raw is not None:
        profile = RotationProfile.from_meta(raw)
        values.update(target=profile.target, verify_with=profile.verify_with or "",
                      max_attempts=str(profile.max_attempts),
                      policy=json.dumps(profile.policy, sort_keys=True) if profile.policy else "")
        for name in REFS:
            uid = getattr(profile, name)
            if uid:
                try:
                    values[name] = vault.get(uid).title
                except KeyturnError:
                    values[name] = uid
        for key, value in profile.options.items():
            values["site" if key == SITE_OPTION else key] = str(value)
    return rec, values


def _values(form: Form) -> dict[str, str]:
    return {name: form.one(name).strip() for name in (*TEXT, *OPTIONS, "site")}


def _attempts(raw: str) -> int:
    low, high = MAX_ATTEMPTS
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(f"--max-attempts must be a whole number {low}-{high}, not {raw[:16]!r}")
    return int(raw)


def _save(vault: Vault, ref: str, values: dict[str, str], actor: str, may_link: bool) -> RotationProfile:
    """What `keyturn rotation set RECORD ...` does with these values (see the module docstring)."""
    if not values["target"]:
        raise ConfigError("--target KIND is required: " + ", ".join(kinds()))
    options = profile_options({k: values[k] for k in OPTIONS if values[k]},
                              values["site"] or None, vault.settings)
    uid = vault.resolve(ref)
    profile = set_profile(vault, uid, target=values["target"], resource=values["resource"] or None,
                          admin=values["admin"] or None, configuration=values["configuration"] or None,
                          policy=values["policy"] or None, verify_with=values["verify_with"] or None,
                          options=options, max_attempts=_attempts(values["max_attempts"] or "3"), actor=actor)
    if profile.target == ENABLE_TARGET and profile.admin is not None and profile.admin != uid and may_link:
        link_enable_secret(vault, uid, profile.admin, actor=actor)
    return profile


def _form(request: Request, rec: Any, values: dict[str, str], error: str = "", status_code: int = 200
          ) -> Response:
    return render(request, "profile_edit.html", {
        "rec": rec, "values": values, "error": error, "error_field": _field_of(error) if error else "",
        "targets": kinds(), "options": [(n, PROFILE_OPTIONS[n]) for n in OPTIONS],
        "site_spec": PROFILE_OPTIONS[SITE_OPTION], "has_profile": rec.meta.get(META_KEY) is not None,
    }, status_code=status_code)


def _list(vault: Vault, query: AccountQuery, offset: int) -> tuple[Any, dict[str, str]]:
    found = list_accounts(vault.engine, query, limit=PER_PAGE, offset=offset)
    return found, titles(vault.engine, {a.resource_uid for a in found.accounts if a.resource_uid})


@router.get("/profiles", include_in_schema=False)
async def profiles(request: Request, _s: Reader,
                   q: Annotated[str | None, Query(max_length=1024)] = None,
                   record: Annotated[str | None, Query(max_length=512)] = None,
                   page: Annotated[int, Query(ge=1, le=1_000_000)] = 1) -> Response:
    ctx = context(request)
    error = ""
    if record and record.strip():
        try:
            uid = await ctx.db(ctx.vault.resolve, record.strip())
            return RedirectResponse(f"{PREFIX}/profiles/{uid}", status_code=303)
        except KeyturnError as exc:
            error = str(exc).splitlines()[0]
    found: Any = None
    resources: dict[str, str] = {}
    q = q.strip() if q else None
    try:
        query = AccountQuery(filter=filter_expression(q, None))
        query.check()
        found, resources = await ctx.db(_list, ctx.vault, query, (page - 1) * PER_PAGE)
    except ConfigError as exc:
        error = error or str(exc)
    pages = max(1, -(-found.total // PER_PAGE)) if found is not None else 1
    return render(request, "profiles.html", {"found": found, "resources": resources, "error": error,
                                             "q": q or "", "record": record or "", "page": page,
                                             "pages": pages}, status_code=422 if error else 200)


@router.get("/profiles/{ref}", include_in_schema=False)
async def profile(request: Request, ref: Ref, _s: Reader) -> Response:
    ctx = context(request)
    rec, values = await ctx.db(_load, ctx.vault, ref)
    return _form(request, rec, values)


@router.post("/profiles/{ref}", include_in_schema=False, dependencies=[Depends(check_csrf)])
async def save(request: Request, ref: Ref, session: Writer) -> Response:
    ctx = context(request)
    rec, _current = await ctx.db(_load, ctx.vault, ref)
    values = _values(await read_form(request))
    try:
        saved = await ctx.db(_save, ctx.vault, rec.uid, values, session.actor,
                             session.principal.can(Permission.RECORDS_WRITE))
    except KeyturnError as exc:
        return _form(request, rec, values, str(exc).splitlines()[0], status_code=422)
    ctx.reload_scheduler()
    session.flash(f"rotation profile set on {rec.title}: target {saved.target}", "ok")
    return RedirectResponse(f"{PREFIX}/profiles/{rec.uid}", status_code=303)


__all__ = ["router"]
