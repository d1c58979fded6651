"""`keyturn record add|list|show|edit|rm|import|export|restore` and `keyturn reveal`.

Scriptable forms (stable)::

    keyturn record add --type pamUser --title "core-sw1 admin" --login admin --password - < pw.txt
    keyturn record add --type pamNetworkDevice --title core-sw1 --field host=10.0.0.1 --custom room=b2
    keyturn record edit core-sw1 --site dc-east                    # its accounts rotate at dc-east
    keyturn record edit "core-sw1 admin" --tag backup --untag lab  # groups (`keyturn.tags`)
    keyturn record add ... --secret-custom enable_secret=-         # secret custom field from stdin

`--site` (a known site, `keyturn.sites`) is kept in the record's metadata: the workers of that site rotate
the accounts on this resource. `--tag`/`--untag` set the record's tags (`keyturn.tags`, kept in
``meta.tags``): the groups a consumer token's ``tag:NAME`` grant reveals. `record add` prints the new
uid alone on stdout. Secrets are never printed except by `reveal` (audited), which prints the value
alone and a newline.

A title, login, field type or label the vault would refuse (`vault.records.check_fields`: control,
bidi or zero-width characters, too long) is a usage error (exit 2) found before the vault is opened.
Titles and labels read from the vault are shown escaped (`vault.records.escaped`) and quoted in
messages shortened (`vault.records.shown`): a name stored before those rules cannot rewrite the screen.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyturn.cli.output import (
    EXIT_USAGE,
    actor,
    echo_json,
    fail,
    handle_errors,
    open_vault,
    quick_settings,
    read_secret,
    settings,
    table,
    warn,
)
from keyturn.secret import Secret

if TYPE_CHECKING:
    from keyturn.vault import Field, Record, Vault

app = typer.Typer(help="Add, list, show, edit, remove, import and export records.", no_args_is_help=True)

MASK = "********"
# Record types that normally carry a password: `record add` prompts for one on a terminal.
PASSWORD_TYPES = frozenset({"login", "pamUser", "serverCredentials", "databaseCredentials"})
FORMATS_HELP = "keyturn or keeper (Keeper Commander JSON)"

TypeOpt = Annotated[str, typer.Option("--type", help="Record type (login, pamUser, pamNetworkDevice, ...).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
LoginOpt = Annotated[str | None, typer.Option("--login", help="The login field.", show_default=False)]
PasswordOpt = Annotated[
    str | None,
    typer.Option("--password", help="'-' reads one line from stdin; omitted on a terminal: prompt.",
                 show_default=False),
]
FieldOpt = Annotated[
    list[str] | None,
    typer.Option("--field", help="Standard field TYPE[:LABEL]=VALUE (repeatable; secret types accept '-').",
                 show_default=False),
]
CustomOpt = Annotated[
    list[str] | None,
    typer.Option("--custom", help="Text custom field LABEL=VALUE (repeatable).", show_default=False),
]
SecretCustomOpt = Annotated[
    list[str] | None,
    typer.Option("--secret-custom", show_default=False,
                 help="Secret custom field LABEL=VALUE, VALUE '-' reads stdin (repeatable)."),
]
AllowDupOpt = Annotated[bool, typer.Option("--allow-duplicate", help="Allow a title that already exists.")]
SiteOpt = Annotated[str | None, typer.Option(
    "--site", show_default=False, help="Site whose workers rotate the accounts on this resource (a known "
    'site, see KEYTURN_SITES); "" or default: none.')]

TagOpt = Annotated[list[str] | None, typer.Option(
    "--tag", show_default=False, help="Add a tag: a group consumer tokens may be granted (repeatable).")]


class _Stdin:
    """Only one option may read stdin per command."""

    def __init__(self) -> None:
        self.used_by: str | None = None

    def claim(self, who: str) -> None:
        if self.used_by is not None:
            fail(f"both {self.used_by} and {who} want stdin; only one may use '-'", EXIT_USAGE)
        self.used_by = who


def _split(spec: str, opt: str) -> tuple[str, str]:
    from keyturn.vault.records import shown

    name, sep, value = spec.partition("=")
    if not sep or not name.strip():
        fail(f"{opt} {shown(name)}: expected NAME=VALUE", EXIT_USAGE)
    return name.strip(" "), value  # only spaces: a stray newline or tab is refused, not silently dropped


def _check_usage(
    title: str | None, fields: list[Field], custom: list[Field], *, rtype: str | None = None,
) -> None:
    """What the vault would refuse in the options themselves, as a usage error (exit 2)."""
    from keyturn.errors import VaultError
    from keyturn.vault.records import check_fields, check_record_type, validate_title

    for opt, value, check in (("--type", rtype, check_record_type), ("--title", title, validate_title)):
        try:
            if value is not None:
                check(value)
        except VaultError as exc:
            fail(f"{opt}: {exc}", EXIT_USAGE)
    try:
        check_fields(fields, custom)
    except VaultError as exc:
        fail(str(exc), EXIT_USAGE)


def _secret_value(value: str, opt: str, stdin: _Stdin) -> Secret:
    if value == "-":
        stdin.claim(opt)
        result = read_secret("-", what=opt.lstrip("-"), prompt=False)
        assert result is not None
        return result
    warn(f"{opt}: a secret given on the command line can leak via the process list and shell history; "
         "use VALUE '-' (stdin)")
    return Secret(value)


def _build_fields(
    login: str | None, password: Secret | None, specs: list[str], stdin: _Stdin,
) -> list[Field]:
    from keyturn.vault import Field
    from keyturn.vault.records import is_secret_field

    fields: list[Field] = []
    if login is not None:
        fields.append(Field("login", None, [login]))
    if password is not None:
        fields.append(Field("password", None, [password]))
    for spec in specs:
        name, value = _split(spec, "--field")
        ftype, _, label = name.partition(":")
        if is_secret_field(ftype, custom=False):
            fields.append(Field(ftype, label or None, [_secret_value(value, "--field", stdin)]))
        else:
            fields.append(Field(ftype, label or None, [value]))
    return fields


def _build_custom(texts: list[str], secrets: list[str], stdin: _Stdin) -> list[Field]:
    from keyturn.vault import Field

    custom = [Field("text", label, [value]) for label, value in (_split(s, "--custom") for s in texts)]
    for spec in secrets:
        label, value = _split(spec, "--secret-custom")
        custom.append(Field("secret", label, [_secret_value(value, "--secret-custom", stdin)]))
    return custom


def _password(value: str | None, stdin: _Stdin, *, prompt: bool) -> Secret | None:
    if value == "-":
        stdin.claim("--password")
    return read_secret(value, what="password", prompt=prompt)


@app.command("add")
@handle_errors
def add(
    type_: TypeOpt,
    title: Annotated[str, typer.Option("--title", help="Record title (unique unless --allow-duplicate).")],
    login: LoginOpt = None,
    password: PasswordOpt = None,
    field: FieldOpt = None,
    custom: CustomOpt = None,
    secret_custom: SecretCustomOpt = None,
    allow_duplicate: AllowDupOpt = False,
    site: SiteOpt = None,
    tag: TagOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a record; prints its uid."""
    from keyturn import tags
    from keyturn.sites import META_KEY, site_setting

    cfg = quick_settings()  # the full settings only for a --site (the sites configured)
    stored_site = site_setting(site, settings()) if site is not None else None
    meta: dict[str, Any] = {META_KEY: stored_site} if stored_site else {}
    if tag:
        meta[tags.META_KEY] = tags.check_tags(tag)
    stdin = _Stdin()
    pw = _password(password, stdin, prompt=type_ in PASSWORD_TYPES)
    fields = _build_fields(login, pw, field or [], stdin)
    cust = _build_custom(custom or [], secret_custom or [], stdin)
    _check_usage(title, fields, cust, rtype=type_)
    with open_vault(cfg) as vault:
        rec = vault.add(type=type_, title=title, fields=fields, custom=cust, allow_duplicate=allow_duplicate,
                        meta=meta or None, actor=actor())
    if as_json:
        echo_json(_record_json(rec))
    else:
        typer.echo(rec.uid)


def _tags(vault: Vault, uid: str) -> list[str]:
    """A record's tags; none for a record failing its integrity check (its metadata is not trusted)."""
    from keyturn import tags
    from keyturn.errors import VaultError

    try:
        return tags.tags_of(vault.meta(uid)[1])
    except VaultError:
        return []


@app.command("list")
@handle_errors
def list_(
    type_: Annotated[str | None, typer.Option("--type", help="Only this type.", show_default=False)] = None,
    title: Annotated[str | None, typer.Option("--title", help="Title contains (case-insensitive).",
                                              show_default=False)] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only records with this tag.",
                                            show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """List records (uid, type, title); nothing is decrypted."""
    from keyturn import tags

    wanted = tags.check_tag(tag) if tag is not None else None
    with open_vault() as vault:
        rows = vault.summaries(type=type_, title=title)
        if wanted is not None:
            rows = [r for r in rows if wanted in _tags(vault, r.uid)]
    if as_json:
        echo_json([{"uid": r.uid, "title": r.title, "type": r.type, "updated_at": r.updated_at.isoformat()}
                   for r in rows])
    elif not rows:
        typer.echo("no records")
    else:
        table(["UID", "TYPE", "TITLE"], [(r.uid, r.type, r.title) for r in rows])


def _value_json(v: Any, *, mask: bool) -> Any:
    if isinstance(v, Secret):
        return MASK if mask else v.reveal()
    return v


def _fields_json(fields: list[Field], *, mask: bool = True) -> list[dict[str, Any]]:
    return [{"type": f.type, "label": f.label, "value": [_value_json(v, mask=mask) for v in f.value]}
            for f in fields]


def _record_json(rec: Record) -> dict[str, Any]:
    return {
        "uid": rec.uid, "title": rec.title, "type": rec.type, "fields": _fields_json(rec.fields),
        "custom": _fields_json(rec.custom), "meta": rec.meta,
        "created_at": rec.created_at.isoformat(), "updated_at": rec.updated_at.isoformat(),
    }


def _show_value(values: list[Any], *, name: bool = False) -> str:
    """Values as one line; `name` (a login): escaped like a title (notes may keep their newlines)."""
    from keyturn.vault.records import escaped

    shown = [MASK if isinstance(v, Secret) else (json.dumps(v) if isinstance(v, (dict, list)) else str(v))
             for v in values]
    text = ", ".join(shown)
    return escaped(text) if name else text


@app.command("show")
@handle_errors
def show(
    ref: Annotated[str, typer.Argument(help="Record uid or unique title.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a record; secret values appear as ********."""
    with open_vault() as vault:
        rec = vault.get(ref)
    if as_json:
        echo_json(_record_json(rec))
        return
    from keyturn.vault.records import LOGIN_TYPE, escaped

    lines = [("uid", rec.uid), ("title", escaped(rec.title)), ("type", rec.type)]
    lines += [(escaped(f.name), _show_value(f.value, name=f.type == LOGIN_TYPE)) for f in rec.fields]
    lines += [(f"custom {escaped(f.label or f.type)}", _show_value(f.value)) for f in rec.custom]
    lines += [(f"meta {k}", json.dumps(v, sort_keys=True)) for k, v in sorted(rec.meta.items())
              if v is not None]  # a cleared setting (site, schedule) is kept as null
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        typer.echo(f"{k + ':':<{width + 1}} {v}")


def _replace(fields: list[Field], new: list[Field], *, by_label: bool) -> list[Field]:
    """Replace the first field with the same type(/label) as each new one, else append."""
    out = list(fields)
    for nf in new:
        for i, f in enumerate(out):
            same = (f.label == nf.label) if by_label else (f.type == nf.type and f.label == nf.label)
            if same:
                out[i] = nf
                break
        else:
            out.append(nf)
    return out


@app.command("edit")
@handle_errors
def edit(
    ref: Annotated[str, typer.Argument(help="Record uid or unique title.")],
    title: Annotated[str | None, typer.Option("--title", help="New title.", show_default=False)] = None,
    login: LoginOpt = None,
    password: Annotated[
        str | None,
        typer.Option("--password", help="New password; '-' reads one line from stdin.", show_default=False),
    ] = None,
    field: FieldOpt = None,
    custom: CustomOpt = None,
    secret_custom: SecretCustomOpt = None,
    remove_field: Annotated[
        list[str] | None,
        typer.Option("--remove-field", show_default=False,
                     help="Remove a standard field (type or label) or custom field (label)."),
    ] = None,
    allow_duplicate: AllowDupOpt = False,
    site: SiteOpt = None,
    tag: TagOpt = None,
    untag: Annotated[list[str] | None, typer.Option(
        "--untag", show_default=False, help="Remove a tag (repeatable; an absent one is fine).")] = None,
) -> None:
    """Change a record's title, fields, site or tags (a changed secret becomes a new current version)."""
    from keyturn import tags
    from keyturn.sites import META_KEY, site_setting
    from keyturn.vault.records import shown

    stored_site = site_setting(site, settings()) if site is not None else None
    retagging = bool(tag or untag)
    tags.retag([], tag or [], untag or [])  # a malformed tag is a usage error before the vault opens
    stdin = _Stdin()
    pw = _password(password, stdin, prompt=False)
    new_fields = _build_fields(login, pw, field or [], stdin)
    new_custom = _build_custom(custom or [], secret_custom or [], stdin)
    _check_usage(title, new_fields, new_custom)
    with open_vault() as vault, vault.unit():
        rec = vault.get(ref)
        fields = _replace(rec.fields, new_fields, by_label=False)
        cust = _replace(rec.custom, new_custom, by_label=True)
        for name in remove_field or []:
            keep_f = [f for f in fields if name not in (f.type, f.label)]
            keep_c = [f for f in cust if f.label != name]
            if len(keep_f) == len(fields) and len(keep_c) == len(cust):
                fail(f"record {rec.uid} has no field {shown(name)}", EXIT_USAGE)
            fields, cust = keep_f, keep_c
        changed_fields = bool(new_fields or remove_field)
        changed_custom = bool(new_custom or remove_field)
        if (site is None and not retagging) or title is not None or changed_fields or changed_custom:
            vault.update(
                rec.uid, title=title, fields=fields if changed_fields else None,
                custom=cust if changed_custom else None, allow_duplicate=allow_duplicate, actor=actor(),
            )
        if site is not None and rec.meta.get(META_KEY) != stored_site:
            vault.set_meta(rec.uid, META_KEY, stored_site, actor=actor())
        if retagging:
            now = tags.tags_of(rec.meta)
            new = tags.retag(now, tag or [], untag or [])
            if new != now:
                vault.set_meta(rec.uid, tags.META_KEY, new or None, actor=actor())
    typer.echo(f"updated {rec.uid}")


@app.command("rm")
@handle_errors
def rm(
    ref: Annotated[str, typer.Argument(help="Record uid or unique title.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a record and all its secret versions."""
    from keyturn.vault.records import shown

    with open_vault() as vault:
        summary = vault.summary(ref)  # not `get`: a record failing its integrity check can be removed
        if not yes:
            if not sys.stdin.isatty():
                fail("refusing to remove without confirmation; pass --yes", EXIT_USAGE)
            typer.confirm(f"Remove {summary.type} record {shown(summary.title)} ({summary.uid})?",
                          abort=True)
        vault.remove(summary.uid, actor=actor())
    typer.echo(f"removed {summary.uid} {shown(summary.title)}")


def _check_format(fmt: str) -> None:
    from keyturn.vault.importers import FORMATS
    from keyturn.vault.records import shown

    if fmt not in FORMATS:
        fail(f"--format {shown(fmt)}: choose {' or '.join(FORMATS)}", EXIT_USAGE)


@app.command("import")
@handle_errors
def import_(
    file: Annotated[Path, typer.Argument(help="JSON file to import.", exists=True, dir_okay=False)],
    fmt: Annotated[str, typer.Option("--format", help=FORMATS_HELP)] = "keyturn",
    allow_duplicate: AllowDupOpt = False,
    allow_scripts: Annotated[bool, typer.Option(
        "--allow-scripts", help="Accept records carrying post-rotation scripts or a Shell field (they run "
        "with the passwords; review the file first).")] = False,
) -> None:
    """Import records, all or nothing."""
    from keyturn.sites import known_sites
    from keyturn.vault.importers import parse, read_file

    _check_format(fmt)
    text = read_file(file)  # at most MAX_IMPORT_BYTES, refused unread beyond
    specs = parse(text, fmt, source=str(file), allow_scripts=allow_scripts, sites=known_sites(settings()))
    with open_vault() as vault:
        uids = vault.add_many(specs, allow_duplicate=allow_duplicate, actor=actor())
        vault.audit.append("record.import", actor=actor(), details={
            "format": fmt, "count": len(uids), "allow_scripts": allow_scripts})
    typer.echo(f"imported {len(uids)} records")


@app.command("export")
@handle_errors
def export(
    file: Annotated[Path, typer.Argument(help="File to write (must not exist).", dir_okay=False)],
    fmt: Annotated[str, typer.Option("--format", help=FORMATS_HELP)] = "keyturn",
) -> None:
    """Export every record WITH SECRETS IN CLEAR to a new file (mode 0600)."""
    from keyturn.vault.importers import export as build

    _check_format(fmt)
    with open_vault() as vault:
        doc = build([vault.get(s.uid) for s in vault.summaries()], fmt)
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fail(f"{file} already exists; refusing to overwrite it")
        except OSError as exc:
            fail(f"cannot create {file}: {exc.strerror}")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        vault.audit.append("record.export", actor=actor(),
                           details={"format": fmt, "count": len(doc["records"]), "file": str(file)})
    warn(f"{file} contains every secret in clear (created with mode 0600); delete it when done")
    typer.echo(f"exported {len(doc['records'])} records to {file}")


VersionOpt = Annotated[int | None, typer.Option(
    "--version", min=1, show_default=False,
    help="An earlier version (numbers as `keyturn history RECORD` lists them).")]


@handle_errors
def reveal(
    ref: Annotated[str, typer.Argument(help="Record uid or unique title.")],
    field: Annotated[str, typer.Option("--field", help="Secret field (type or label).")] = "password",
    version: VersionOpt = None,
) -> None:
    """Print one secret value (alone, then a newline), the current one or --version N. Audited."""
    with open_vault(quick_settings()) as vault:
        # `reveal` takes a uid or a unique title itself: one transaction, not a `resolve` first.
        value = vault.reveal(ref, field=field, actor=actor(), version=version)
    typer.echo(value.reveal())


@app.command("restore")
@handle_errors
def restore(
    ref: Annotated[str, typer.Argument(help="Record uid or unique title.")],
    version: Annotated[int, typer.Option("--version", min=1, help="The version to make current again.")],
    field: Annotated[str, typer.Option("--field", help="Secret field (type or label).")] = "password",
) -> None:
    """Make secret version N current again (stored as a new version; audited `record.restore`).

    Only the vault changes: use it when the device still has that secret — e.g. a rotation stored a
    secret that never reached the device. Rotate afterwards to get a fresh one."""
    with open_vault() as vault:
        uid = vault.resolve(ref)
        number = vault.restore(uid, version, field=field, actor=actor())
    typer.echo(f"restored version {version} of {uid} as version {number} (current); the device was not "
               "touched")
