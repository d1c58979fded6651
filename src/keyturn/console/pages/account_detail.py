"""Account detail: ``GET /accounts/{record_uid}`` and "rotate now" (``POST /accounts/{record_uid}/rotate``).

The page shows one account as `keyturn rotation show`, `keyturn history` and `keyturn status` do: its
profile (target, resource, admin record, policy, options, attached post-rotation scripts), schedule and
next due time, the trust pinned for its device, its secret's versions (states and times, never values),
and its latest rotations step by step (`keyturn.console.pages.rotation_detail` has one rotation in full).
Script output appears only for roles holding the API's ``reveal`` permission (admins), as in the API.

"Rotate now" (operator and admin, CSRF-checked) starts the rotation exactly as ``POST /rotations``
does (`keyturn.api.routes.rotations.start_rotations`: checked first, audited as ``api.rotate``) and comes
back to this page with ``?rotation=ID``, where the live progress panel follows the journal
(`keyturn.console.pages.rotation_detail`, polled by ``static/progress.js``). Readers without the
permission see no button, and a POST from them is a 403 (audited), as in the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from keyturn.accounts_view import Account, one_account
from keyturn.api.auth import Permission, context
from keyturn.api.routes.rotations import RotationOut, rotation_out, start_rotations
from keyturn.console.csrf import check_csrf
from keyturn.console.render import render
from keyturn.console.session import PREFIX, ConsoleSession, require_session
from keyturn.engine.journal import Journal
from keyturn.engine.profile import META_KEY as PROFILE_KEY
from keyturn.engine.profile import RotationProfile
from keyturn.errors import ConfigError, PolicyError, ProfileError, VaultError
from keyturn.policy import parse_policy
from keyturn.scripts.attachments import attachments_of
from keyturn.vault import Vault
from keyturn.vault.storage import RecordRow
from keyturn.vault.versions import VersionInfo

router = APIRouter()

TIMELINE = 10            # rotations shown with their steps; the rotation page has the rest
UID = Annotated[str, Path(min_length=1, max_length=64)]

# Custom fields of a device record that say how keyturn trusts it (`keyturn device trust`, README
# "Records the targets read"): (what, pinned-value fields, mode field, modes that check nothing).
TRUST_FIELDS = (
    ("TLS certificate", ("fingerprint", "ca_bundle"), "insecure", ("true", "yes", "1")),
    ("SSH host key", ("host_key_fingerprint", "ssh_known_hosts"), "ssh_host_key", ("accept-any",)),
)
SSH_TARGETS = ("iosxe-ssh", "iosxe-enable-secret")


@dataclass(frozen=True, slots=True)
class Trust:
    """How one channel to the device is trusted: `state` is pinned, tofu, not checked or not pinned."""

    what: str
    state: str
    detail: str


@dataclass
class AccountDetail:
    """Everything the page shows; built off the event loop by `load` (no secret value in it)."""

    uid: str
    title: str
    type: str
    account: Account
    profile: RotationProfile
    names: dict[str, str]
    policy: str
    trust: list[Trust]
    versions: list[VersionInfo]
    rotations: list[RotationOut]
    scripts: list[str] = field(default_factory=list)


def _titles(vault: Vault, uids: list[str]) -> dict[str, str]:
    with vault.storage.session() as s:
        rows = s.execute(sa.select(RecordRow.uid, RecordRow.title).where(RecordRow.uid.in_(uids)))
        return {uid: title for uid, title in rows}


def _policy(profile: RotationProfile) -> str:
    try:
        p = parse_policy(profile.policy)
    except PolicyError as exc:
        return f"invalid: {exc}"
    return (f"{p.length} characters; at least {p.min_upper} upper, {p.min_lower} lower, "
            f"{p.min_digits} digits, {p.min_special} special" + ("" if profile.policy else " (default)"))


def _trust(vault: Vault, resource_uid: str, target: str) -> list[Trust]:
    """The trust pinned on the device record (custom fields, read as `keyturn device trust` writes)."""
    if target.startswith("meraki"):
        return [Trust("TLS certificate", "system CA", "the cloud API's certificate, checked against the "
                      "system's certificate authorities")]
    if not target.startswith("iosxe"):
        return []           # no device keyturn talks to itself (noop: the scripts do)
    try:
        rec = vault.get(resource_uid)
    except VaultError as exc:   # deleted or unreadable: say so, the rest of the page still helps
        return [Trust("device", "unknown", f"the device record cannot be read: {exc}")]
    out = []
    for what, pins, mode_field, unchecked in TRUST_FIELDS:
        if (what == "SSH host key") != (target in SSH_TARGETS):
            continue
        mode = str(rec.custom_value(mode_field) or "").strip().lower()
        pinned = [(label, str(rec.custom_value(label)).strip()) for label in pins if rec.custom_value(label)]
        if pinned:
            label, value = pinned[0]
            out.append(Trust(what, "pinned", f"{label} {value}"))
        elif mode in unchecked:
            out.append(Trust(what, "not checked", f"{mode_field}={mode}: anything the device presents is "
                             "accepted; pin it with `keyturn device trust`"))
        elif mode == "tofu":
            out.append(Trust(what, "tofu", "trusted on first use"))
        else:
            out.append(Trust(what, "not pinned", "rotations are refused until it is pinned: "
                             "`keyturn device trust` on the keyturn host"))
    return out


def load(vault: Vault, uid: str, *, output: bool) -> AccountDetail | None:
    """The page's data for record `uid`, or None when it is not a managed account."""
    account = one_account(vault.engine, uid)
    if account is None:
        return None
    rec = vault.get(uid)
    try:
        profile = RotationProfile.from_meta(rec.meta.get(PROFILE_KEY))
    except ProfileError:
        return None
    linked = [u for u in (profile.resource, profile.admin, profile.configuration) if u]
    journal = Journal(vault.engine)
    rotations = [rotation_out(row, journal.steps(row.id), output=output)
                 for row in journal.for_record(uid, limit=TIMELINE)]
    try:
        scripts = [a.script for a in attachments_of(rec)]
    except ConfigError as exc:
        scripts = [f"(malformed: {exc})"]
    return AccountDetail(
        uid=uid, title=rec.title, type=rec.type, account=account, profile=profile,
        names=_titles(vault, linked), policy=_policy(profile),
        trust=_trust(vault, profile.resource or uid, profile.target),
        versions=vault.versions(uid), rotations=rotations, scripts=scripts,
    )


@router.get("/accounts/{record_uid}", include_in_schema=False)
async def account_page(
    request: Request, record_uid: UID,
    session: Annotated[ConsoleSession, Depends(require_session(permission=Permission.ROTATION_READ))],
    rotation: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9a-f-]+$")] = None,
) -> Response:
    ctx = context(request)
    detail = await ctx.db(load, ctx.vault, record_uid, output=session.principal.can(Permission.REVEAL))
    if detail is None:
        raise HTTPException(404, f"no managed account with uid {record_uid!r}")
    watching: dict[str, Any] | None = None
    if rotation is not None:
        watching = {"id": rotation, "url": f"{PREFIX}/rotations/{rotation}/progress"}
    return render(request, "account_detail.html", {"d": detail, "watching": watching})


@router.post("/accounts/{record_uid}/rotate", include_in_schema=False, dependencies=[Depends(check_csrf)])
async def rotate_now(
    request: Request, record_uid: UID,
    session: Annotated[ConsoleSession, Depends(require_session(permission=Permission.ROTATE))],
) -> Response:
    ctx = context(request)
    accepted = await start_rotations(ctx, session.actor, records=[record_uid])
    session.flash(f"Rotation of {accepted[0].title} started.", "ok")
    return RedirectResponse(f"{PREFIX}/accounts/{record_uid}?rotation={accepted[0].id}#progress",
                            status_code=303)


__all__ = ["AccountDetail", "Trust", "load", "router"]
