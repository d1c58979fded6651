"""`keyturn device trust RECORD`: pin a device's TLS certificate and SSH host key on its resource record.

Stock IOS XE serves one self-signed certificate without a subjectAltName (reference field behaviour
§5), so a CA bundle cannot verify it; the certificate's SHA-256 fingerprint can. This command reads
both fingerprints — a TLS handshake on the RESTCONF port, an SSH key exchange on the SSH port, neither
sending a credential — shows them with what a person compares on the device
(`show crypto pki certificates verbose` prints the subject, issuer, serial, validity and the SHA-1
fingerprint), and after a confirmation stores them in the custom fields the targets read:

    fingerprint            SHA-256 of the certificate, hex   (iosxe-restconf: pinned before any request)
    host_key_fingerprint   SHA256:... as `ssh-keygen -l`     (iosxe-ssh, iosxe-enable-secret)

and, with the TLS pin, what the fingerprint cannot tell: the pinned certificate's validity end and
subject (`certificate_not_after`, ISO 8601 UTC; `certificate_subject`, RFC 4514), which `keyturn
doctor` reads to warn 30 days before the certificate expires. A pin stored before these fields
existed gets them the next time `device trust` sees the same certificate (no question asked: the
pin itself does not change).

A value already pinned that differs from what the device now presents is shown loudly and is replaced
only with `--replace`. Every stored change is audited as `device.trust` (old and new values).

    keyturn device trust core-sw1                 # show, ask, store
    keyturn device trust core-sw1 --yes           # scripted: no question (no TTY needs --yes)
    keyturn device trust core-sw1 --ssh-only      # a device without RESTCONF
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyturn.cli.output import EXIT_USAGE, actor, fail, handle_errors, open_vault, warn

if TYPE_CHECKING:
    from keyturn.targets.base import Endpoint
    from keyturn.targets.tofu import CertificateInfo, HostKeyInfo
    from keyturn.vault import Field, Record

app = typer.Typer(help="Trust material of devices: pin TLS certificate and SSH host key fingerprints.",
                  no_args_is_help=True, rich_markup_mode=None)

TLS_FIELD = "fingerprint"
SSH_FIELD = "host_key_fingerprint"
NOT_AFTER_FIELD = "certificate_not_after"
SUBJECT_FIELD = "certificate_subject"


@dataclass(frozen=True)
class _Pin:
    """One value to pin: the custom field, what is stored now, what the device presents."""

    label: str
    what: str
    old: str | None
    new: str

    @property
    def state(self) -> str:
        if self.old is None:
            return "new"
        return "unchanged" if _same(self.label, self.old, self.new) else "CHANGED"


def _same(label: str, old: str, new: str) -> bool:
    if label == TLS_FIELD:
        from keyturn.targets.http import normalize_fingerprint

        try:
            return normalize_fingerprint(old) == normalize_fingerprint(new)
        except ValueError:
            return False  # a malformed stored pin never matches
    return old.strip() == new.strip()


def _colons(hex_digest: str) -> str:
    return ":".join(hex_digest[i:i + 2] for i in range(0, len(hex_digest), 2)).upper()


def _stored(record: Record, label: str) -> str | None:
    value = record.custom_value(label)
    text = str(value).strip() if value is not None else ""
    return text or None


async def _fetch(endpoint: Endpoint, *, tls: bool, ssh: bool,
                 connect_timeout: float) -> tuple[CertificateInfo | None, HostKeyInfo | None]:
    from keyturn.targets.iosxe_ssh import ssh_algorithms
    from keyturn.targets.tofu import fetch_certificate, fetch_host_key

    cert = key = None
    if tls:
        cert = await fetch_certificate(endpoint.host, endpoint.port or 443, connect_timeout=connect_timeout)
    if ssh:
        key = await fetch_host_key(endpoint.host, endpoint.ssh_port or 22, connect_timeout=connect_timeout,
                                   algorithms=ssh_algorithms(endpoint.options))
    return cert, key


def _show(record: Record, endpoint: Endpoint, cert: CertificateInfo | None, key: HostKeyInfo | None,
          pins: dict[str, _Pin]) -> None:
    rows: list[tuple[str, str]] = []
    if cert is not None:
        typer.echo(f"TLS certificate at {endpoint.host}:{endpoint.port or 443}")
        issuer = cert.issuer + ("  (self-signed)" if cert.self_signed else "")
        rows = [("SHA-256", _colons(cert.sha256)), ("SHA-1", _colons(cert.sha1)), ("subject", cert.subject),
                ("issuer", issuer), ("subjectAltName", ", ".join(cert.san) or "none"),
                ("serial", cert.serial), ("valid", f"{cert.not_before} to {cert.not_after}"),
                ("pin", pins[TLS_FIELD].state)]
        _rows(rows)
        typer.echo("  (compare with `show crypto pki certificates verbose` on the device: subject, serial, "
                   "SHA-1 fingerprint)")
    if key is not None:
        typer.echo(f"SSH host key at {endpoint.host}:{endpoint.ssh_port or 22}")
        _rows([("fingerprint", key.fingerprint), ("key type", key.algorithm), ("pin", pins[SSH_FIELD].state)])
    for pin in pins.values():
        if pin.state == "CHANGED":
            assert pin.old is not None
            loud = typer.style(f"!! {pin.what} of {record.title!r} CHANGED since it was pinned", fg="red",
                               bold=True)
            typer.echo(loud, err=True)
            typer.echo(typer.style(f"!!   pinned:  {pin.old}", fg="red"), err=True)
            typer.echo(typer.style(f"!!   device:  {pin.new}", fg="red"), err=True)


def _rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        typer.echo(f"  {k:<{width}}  {v}")


def _with_values(custom: list[Field], values: dict[str, str]) -> list[Field]:
    from keyturn.vault import Field

    out = list(custom)
    for label, value in values.items():
        new = Field("text", label, [value])
        for i, f in enumerate(out):
            if (f.label or "").casefold() == label.casefold():
                out[i] = new
                break
        else:
            out.append(new)
    return out


def _cert_facts(record: Record, cert: CertificateInfo | None, pins: dict[str, _Pin]) -> dict[str, str]:
    """The pinned certificate's validity end and subject, where the record does not hold them yet."""
    if cert is None or TLS_FIELD not in pins:
        return {}
    facts = {NOT_AFTER_FIELD: cert.not_after, SUBJECT_FIELD: cert.subject}
    return {k: v for k, v in facts.items() if _stored(record, k) != v}


@app.command("trust")
@handle_errors
def trust(
    record: Annotated[str, typer.Argument(help="The device's resource record (uid or unique title).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Store without asking (after comparing the "
                                      "values with the device some other way).")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a pinned value that differs from "
                                          "what the device now presents.")] = False,
    tls_only: Annotated[bool, typer.Option("--tls-only", help="Only the TLS certificate (RESTCONF "
                                           "port).")] = False,
    ssh_only: Annotated[bool, typer.Option("--ssh-only", help="Only the SSH host key.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds per connection.")] = 10.0,
) -> None:
    """Show the device's TLS certificate and SSH host key fingerprints and pin them on RECORD."""
    from keyturn.engine.accounts import build_endpoint, resource_kind
    from keyturn.engine.profile import NOOP_KIND, RotationProfile

    if tls_only and ssh_only:
        fail("--tls-only and --ssh-only exclude each other", EXIT_USAGE)
    with open_vault() as vault:
        rec = vault.get(record)
        if resource_kind(rec) != "iosxe":
            fail(f"record {rec.title!r} is a Meraki resource: the Meraki API is checked against the system "
                 "trust store; `device trust` pins IOS XE devices", EXIT_USAGE)
        endpoint = build_endpoint(rec, RotationProfile(target=NOOP_KIND))
        cert, key = asyncio.run(_fetch(endpoint, tls=not ssh_only, ssh=not tls_only, connect_timeout=timeout))
        pins: dict[str, _Pin] = {}
        if cert is not None:
            pins[TLS_FIELD] = _Pin(TLS_FIELD, "TLS certificate fingerprint", _stored(rec, TLS_FIELD),
                                   cert.sha256)
        if key is not None:
            pins[SSH_FIELD] = _Pin(SSH_FIELD, "SSH host key fingerprint", _stored(rec, SSH_FIELD),
                                   key.fingerprint)
        _show(rec, endpoint, cert, key, pins)
        changed = [p for p in pins.values() if p.state == "CHANGED"]
        if changed and not replace:
            verb = "differs" if len(changed) == 1 else "differ"
            fail(f"{' and '.join(p.what for p in changed)} of {rec.title!r} {verb} from the pinned value: a "
                 "replaced certificate or key, or someone in the path; check on the device, then run again "
                 "with --replace")
        todo = [p for p in pins.values() if p.state != "unchanged"]
        facts = _cert_facts(rec, cert, pins)
        if not todo:
            if facts:  # the same certificate, pinned before its expiry was recorded
                with vault.unit():
                    vault.update(rec.uid, custom=_with_values(rec.custom, facts), actor=actor())
                typer.echo(f"{rec.title} already pins these values; recorded the certificate's expiry "
                           f"({facts.get(NOT_AFTER_FIELD, _stored(rec, NOT_AFTER_FIELD))})")
                return
            typer.echo(f"nothing to change: {rec.title} already pins these values")
            return
        if endpoint.insecure and TLS_FIELD in pins:
            warn(f"{rec.title} is marked insecure=true: TLS is not verified (and the pin not used) until "
                 "that field is removed")
        if not yes:
            if not sys.stdin.isatty():
                fail("refusing to pin without confirmation: compare the values above with the device, then "
                     "run again with --yes", EXIT_USAGE)
            typer.confirm(f"Pin {' and '.join(p.what for p in todo)} on {rec.title}?", abort=True)
        details: dict[str, Any] = {"host": endpoint.host, "replaced": bool(changed)}
        for p in todo:
            details[p.label] = {"old": p.old, "new": p.new}
        if NOT_AFTER_FIELD in facts:
            details[NOT_AFTER_FIELD] = facts[NOT_AFTER_FIELD]
        values = {p.label: p.new for p in todo} | facts
        with vault.unit():
            vault.update(rec.uid, custom=_with_values(rec.custom, values), actor=actor())
            vault.audit.append("device.trust", actor=actor(), record_uid=rec.uid, details=details)
    typer.echo(f"pinned on {rec.title}: {', '.join(p.label for p in todo)}")
