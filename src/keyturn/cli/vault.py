"""`keyturn init`, `keyturn vault rekey|status|check|reseal`.

Rekey — how the new key is supplied (both keys are needed until it completes):

* default: a new random key is written to ``<key file>.new`` (0600). Re-running the command resumes
  with it; `open` also picks it up automatically, so the vault stays usable mid-rekey. When every
  data key is rewrapped the vault switches to the new key and ``.new`` atomically replaces the key
  file (the old key is then gone).
* ``--new-key-file P``: use (or create) the key file P; re-run with the same P to resume. When done,
  point ``KEYTURN_KEY_FILE`` at P.
* ``--new-passphrase``: Argon2id from a new passphrase (``KEYTURN_NEW_PASSPHRASE`` or a hidden
  prompt); its salt is stored when the rekey starts, so resuming with the same passphrase works.

``--limit N`` stops after N records (a deliberate interruption; run again to resume).

A rekey holds the rekey lease (a second one is refused, naming the first), and `keyturn serve` may
keep running: its writes check the vault's key id, and it picks the new key up from the key file.
The vault's integrity key does not change, so record tags, the audit chain and audit HMACs stay valid.

Integrity: every record carries a tag over its type, title, fields and metadata; one changed in the
database directly is refused when used. ``vault check`` lists such records (and checks the audit
chain); ``vault reseal RECORD`` shows what the record holds now and, once confirmed, accepts it.

Backup and restore (`keyturn.vault.backup`): ``vault backup FILE`` writes an online, consistent snapshot
of every table, encrypted as stored — it does NOT contain the master key, back that up separately;
``vault restore FILE`` checks the file, the key and every record, then restores in one transaction into
an empty database (``--force`` replaces a non-empty one).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from keyturn.cli.output import (
    EXIT_USAGE,
    actor,
    echo_json,
    fail,
    handle_errors,
    open_vault,
    settings,
    table,
    warn,
)
from keyturn.secret import Secret

app = typer.Typer(help="Master key and vault state.", no_args_is_help=True)


def _ask_new(label: str, env: str) -> Secret:
    name = env.removeprefix("KEYTURN_").lower()
    configured = getattr(settings(), name)
    if configured is not None and configured.get_secret_value():
        return Secret(configured.get_secret_value())
    if not sys.stdin.isatty():
        fail(f"no {label}: set {env} or run on a terminal", EXIT_USAGE)
    entered = typer.prompt(label.capitalize(), hide_input=True, confirmation_prompt=True)
    if not entered:
        fail(f"the {label} must not be empty", EXIT_USAGE)
    return Secret(entered)


@handle_errors
def init(
    passphrase: Annotated[
        bool,
        typer.Option("--passphrase", help="Derive the master key from a passphrase (Argon2id) instead of a "
                     "key file; env KEYTURN_PASSPHRASE or a hidden prompt."),
    ] = False,
) -> None:
    """Create the data directory, master key and vault. Refuses to overwrite an existing vault."""
    from keyturn.vault import Vault

    cfg = settings()
    pw: Secret | None = None
    if passphrase:
        pw = (Secret(cfg.passphrase.get_secret_value()) if cfg.passphrase
              else _ask_new("vault passphrase", "KEYTURN_PASSPHRASE"))
    with Vault.init(cfg, passphrase=pw, actor=actor()) as vault:
        default = vault.summaries(type="pamConfiguration")[0]
        key_id = vault.key_id
        source = vault.status().key_source
    typer.echo(f"initialised vault in {cfg.home}")
    typer.echo(f"database: {vault.storage.display_url}")
    typer.echo(f"master key: {source} (key id {key_id})")
    if pw is None and cfg.master_key is None:
        typer.echo("back up the key file: without it the vault cannot be opened")
    typer.echo(f"default PAM configuration: {default.uid}")


@app.command("rekey")
@handle_errors
def rekey(
    new_key_file: Annotated[
        Path | None,
        typer.Option("--new-key-file", help="New key file (created 0600 if missing).", show_default=False,
                     dir_okay=False),
    ] = None,
    new_passphrase: Annotated[
        bool, typer.Option("--new-passphrase", help="New passphrase (env KEYTURN_NEW_PASSPHRASE or prompt).")
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Stop after N records (resume later).",
                                 show_default=False)
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Records per transaction.")] = 200,
) -> None:
    """Rewrap every data key under a new master key (record data is not re-encrypted). Resumable."""
    from keyturn.vault.keys import (
        KdfParams,
        create_key_file,
        derive_from_passphrase,
        load_key_file,
        pending_key_file,
    )

    if new_key_file is not None and new_passphrase:
        fail("choose --new-key-file or --new-passphrase, not both", EXIT_USAGE)
    cfg = settings()
    key_file = cfg.effective_key_file
    if new_passphrase:
        pw = _ask_new("new vault passphrase", "KEYTURN_NEW_PASSPHRASE")
        vault = open_vault(new_passphrase=pw)
        plan_kdf = vault.rekey_kdf()
        kdf = plan_kdf or KdfParams.new()
        new_key = derive_from_passphrase(pw, kdf)
        mode = "passphrase"
    else:
        path = new_key_file or pending_key_file(key_file)
        new_key = load_key_file(path) if path.exists() else create_key_file(path)
        kdf = None
        vault = open_vault(new_key=new_key)
        mode = "file" if new_key_file is not None else "default"
    with vault:
        progress = vault.rekey(new_key, kdf=kdf, limit=limit, batch_size=batch_size, actor=actor())
    if not progress.finished:
        typer.echo(f"rewrapped {progress.rewrapped} records; {progress.remaining} still under the old key")
        typer.echo("run `keyturn vault rekey` again with the same new key to resume")
        raise typer.Exit(0)
    if mode == "default":
        os.replace(pending_key_file(key_file), key_file)
        where = f"key file {key_file}"
    elif mode == "file":
        where = f"key file {new_key_file}"
        warn(f"set KEYTURN_KEY_FILE={new_key_file}: the old key no longer opens the vault")
    else:
        where = "the new passphrase"
    typer.echo(f"rekey complete: rewrapped {progress.rewrapped} records; vault now sealed by {where} "
               f"(key id {progress.new_key_id})")


@app.command("status")
@handle_errors
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False) -> None:
    """Database, master key id and source, counts, rekey progress."""
    with open_vault() as vault:
        st = vault.status()
    if as_json:
        echo_json(st.__dict__)
        return
    rows = [
        ("database", st.database),
        ("master key", f"{st.key_id} ({st.key_source})"),
        ("records", str(st.records)),
        ("secret versions", str(st.secret_versions)),
        ("audit entries", str(st.audit_entries)),
        ("rekey", f"to {st.rekey_to}: {st.rekey_remaining} records remaining" if st.rekey_to else "none"),
    ]
    for k, v in rows:
        typer.echo(f"{k + ':':<16} {v}")


@app.command("check")
@handle_errors
def check(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False) -> None:
    """Check every record's integrity tag and the audit chain; exit 1 when anything fails."""
    with open_vault() as vault:
        bad = vault.tampered()
        broken = vault.audit.verify()
    if as_json:
        echo_json({"tampered": [{"uid": r.uid, "title": r.title, "type": r.type} for r in bad],
                   "audit_broken_at": broken})
    else:
        if bad:
            table(["UID", "TYPE", "TITLE"], [(r.uid, r.type, r.title) for r in bad],
                  title="records changed outside keyturn")
        typer.echo(f"records: {len(bad)} failed the integrity check" if bad else "records: all intact")
        typer.echo(f"audit chain: broken at entry {broken}" if broken is not None else "audit chain: intact")
        if bad:
            typer.echo("review each with `keyturn vault reseal RECORD` (it shows the record first), "
                       "or remove it, or restore the database from a backup")
    if bad or broken is not None:
        raise typer.Exit(1)


@app.command("reseal")
@handle_errors
def reseal(
    ref: Annotated[str, typer.Argument(help="Record uid or unique title.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Accept without asking (after reviewing it).")] \
        = False,
) -> None:
    """Show a record as stored (no secret values) and accept it as authentic: a new integrity tag.

    For a record refused as changed outside keyturn: read what it holds now — script attachments,
    Shell, rotation profile — and accept it only if every part is what you expect. Audited.
    """
    with open_vault() as vault:
        view = vault.inspect(ref)
        intact = view.pop("intact")
        echo_json(view)
        if intact:
            typer.echo(f"record {view['uid']} passes its integrity check; nothing to do")
            return
        if not yes:
            if not sys.stdin.isatty():
                fail("refusing to reseal without confirmation; review the record above, then pass --yes",
                     EXIT_USAGE)
            typer.confirm("Accept this record, scripts and metadata included, as authentic?", abort=True)
        vault.reseal(view["uid"], actor=actor())
    typer.echo(f"resealed {view['uid']}")


@app.command("backup")
@handle_errors
def backup(
    file: Annotated[Path, typer.Argument(help="Backup file to write (zip; 0600).", dir_okay=False)],
) -> None:
    """Write an online, consistent backup of the whole vault, encrypted as stored (no master key)."""
    from keyturn.vault.backup import backup as write_backup

    with open_vault() as vault:
        summary = write_backup(vault.storage, vault.barrier, file)
    typer.echo(f"backed up {summary.rows} rows of {len(summary.tables)} tables to {file} "
               f"(schema {summary.schema_revision})")
    typer.echo("the backup does NOT contain the master key: keep the key file (or passphrase) backed up "
               "separately, without it the backup cannot be restored")


@app.command("restore")
@handle_errors
def restore(
    file: Annotated[Path, typer.Argument(help="Backup file written by `keyturn vault backup`.",
                                         exists=True, dir_okay=False)],
    force: Annotated[bool, typer.Option("--force", help="Replace a database that is not empty.")] = False,
) -> None:
    """Restore a backup into an empty vault database, after checking it whole; all or nothing."""
    from keyturn.vault.backup import restore as run_restore

    summary = run_restore(settings(), file, force=force)
    typer.echo(f"restored {summary.rows} rows of {len(summary.tables)} tables from {file} "
               f"(schema {summary.schema_revision}); records, secret versions and audit chain verified")
