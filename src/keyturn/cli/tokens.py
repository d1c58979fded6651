"""`keyturn token create|list|revoke`: API bearer tokens (see `keyturn.api.tokens`).

`token create` prints the token alone on stdout, once; only its SHA-256 digest is stored.

A consumer token reveals only what its grants match (`keyturn.consumers`)::

    keyturn token create --role consumer --name oxidized --grant tag:backup --grant record:sw1-admin

``record:REF`` is resolved now and stored as the record's uid; ``tag:NAME`` matches records tagged NAME
whenever they are asked for.
"""

from __future__ import annotations

from typing import Annotated

import typer

from keyturn.cli.output import EXIT_USAGE, actor, echo_json, fail, handle_errors, open_vault, table

app = typer.Typer(help="API bearer tokens (roles: admin, operator, auditor, consumer).", no_args_is_help=True,
                  rich_markup_mode=None)


@app.command("create")
@handle_errors
def create(
    role: Annotated[str, typer.Option("--role", help="admin, operator, auditor or consumer.")],
    expires: Annotated[str | None, typer.Option(
        "--expires", show_default=False, help="Lifetime, e.g. 90d, 12h, 2w (default: no expiry).")] = None,
    name: Annotated[str | None, typer.Option("--name", show_default=False,
                                             help="A label to recognise the token by.")] = None,
    grant: Annotated[list[str] | None, typer.Option(
        "--grant", show_default=False,
        help="What a consumer token may reveal: record:REF or tag:NAME (repeatable; consumer only).")] = None,
) -> None:
    """Create a token; it is printed once and cannot be shown again."""
    from keyturn.api.tokens import Role, TokenStore, parse_duration
    from keyturn.consumers import parse_grants

    lifetime = parse_duration(expires) if expires else None
    grants = parse_grants(grant or [])
    if role == Role.CONSUMER and not grants:
        fail("a consumer token needs at least one --grant record:REF or --grant tag:NAME", EXIT_USAGE)
    with open_vault() as vault:
        # A title names a record now; the uid keeps naming it (a new record with that title is not granted).
        stored = [f"record:{vault.resolve(g.value)}" if g.kind == "record" else str(g) for g in grants]
        store = TokenStore(vault.engine)
        info, token = store.create(role, name=name or f"{role}-token", expires_in=lifetime,
                                   created_by=actor(), grants=stored)
        details: dict[str, object] = {
            "token_id": info.id, "name": info.name, "role": str(info.role),
            "expires_at": info.expires_at.isoformat() if info.expires_at else None}
        if info.grants:
            details["grants"] = list(info.grants)
        vault.audit.append("api.token.create", actor=actor(), details=details)
    typer.echo(token.reveal())
    typer.echo(f"token {info.id} ({info.role}) created; store it now, it is not shown again", err=True)


@app.command("list")
@handle_errors
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List tokens (never their values)."""
    from keyturn.api.tokens import TokenStore

    with open_vault() as vault:
        tokens = TokenStore(vault.engine).list()
    if as_json:
        echo_json([t.to_json() for t in tokens])
        return
    if not tokens:
        typer.echo("no tokens")
        return
    table(["ID", "NAME", "ROLE", "CREATED", "EXPIRES", "REVOKED", "GRANTS"],
          [(t.id, t.name, t.role.value, t.created_at.strftime("%Y-%m-%d %H:%M"),
            t.expires_at.strftime("%Y-%m-%d %H:%M") if t.expires_at else "never",
            t.revoked_at.strftime("%Y-%m-%d %H:%M") if t.revoked_at else "", " ".join(t.grants))
           for t in tokens])


@app.command("revoke")
@handle_errors
def revoke(
    ref: Annotated[str, typer.Argument(help="Token id, or the name of exactly one active token.")],
) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    from keyturn.api.tokens import TokenStore

    with open_vault() as vault:
        info = TokenStore(vault.engine).revoke(ref)
        vault.audit.append("api.token.revoke", actor=actor(),
                           details={"token_id": info.id, "name": info.name})
    typer.echo(f"token {info.id} ({info.name}) revoked")
