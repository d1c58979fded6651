"""Nornir inventory transform: each host's password (and, optionally, username) from keyturn.

Registered as the `keyturn` transform function (entry point `nornir.plugins.transform_function`), so a
Nornir config needs no import::

    nr = InitNornir(inventory={
        "plugin": "SimpleInventory",
        "options": {"host_file": "hosts.yaml"},
        "transform_function": "keyturn",
        "transform_function_options": {"record": "{name} admin"},
    })

Which record: the host's (or its groups' / defaults') data key `keyturn_record`, else the `record`
template (`{name}` is the host name, `{hostname}` its address; default `"{name} admin"`). What: the
record's `login` and `field` (default `password`) as one pair (`login_and_password`: an A/B rotation
swaps both, so the username comes from keyturn too); `login=False` fills the password only and keeps
the inventory's username. Where from: `KEYTURN_URL` + `KEYTURN_TOKEN` (+ `KEYTURN_CA_BUNDLE`) → the
server; else the local vault (`KEYTURN_HOME`); tests pass `source=` any `CredentialSource`. One source
serves every host of a load. Every read is audited by keyturn; a host whose record cannot be read fails
the load with the host named.

Run the transform right before the job, as the inventory is loaded: a rotation afterwards replaces the
password (build the inventory again, or use A/B rotation so the previous one stays valid).
"""

from __future__ import annotations

import atexit
import functools
import os

from nornir.core.inventory import Host

from keyturn.errors import ConfigError, KeyturnError
from keyturn.integrations.source import (
    CA_ENV,
    TOKEN_ENV,
    URL_ENV,
    CredentialSource,
    from_env,
    login_and_password,
)

DEFAULT_RECORD = "{name} admin"


@functools.cache
def _shared_source(url: str | None, token: str | None, ca: str | None, home: str | None) -> CredentialSource:
    # keyed by the environment that chose it: a test (or script) that changes KEYTURN_URL gets a new one
    source = from_env(actor="nornir")
    atexit.register(source.close)
    return source


def _env_source() -> CredentialSource:
    env = os.environ
    return _shared_source(env.get(URL_ENV), env.get(TOKEN_ENV), env.get(CA_ENV), env.get("KEYTURN_HOME"))


def record_for(host: Host, template: str = DEFAULT_RECORD) -> str:
    """The record a host's credential lives in: its `keyturn_record` data, else the template."""
    named = host.get("keyturn_record")
    if named:
        return str(named)
    try:
        return template.format(name=host.name, hostname=host.hostname or host.name)
    except (KeyError, IndexError) as exc:
        raise ConfigError(f"record template {template!r}: only {{name}} and {{hostname}} are known",
                          location="transform_function_options.record") from exc


def fill_credentials(host: Host, *, record: str = DEFAULT_RECORD, field: str = "password",
                     login: bool = True, source: CredentialSource | None = None) -> None:
    """Nornir transform function: set `host.username` and `host.password` (only the password with
    `login=False`)."""
    ref = record_for(host, record)
    reader = source or _env_source()
    try:
        if login:
            username, secret = login_and_password(reader, ref, field=field)
            host.username = username.reveal()
        else:
            secret = reader.reveal(ref, field)
    except KeyturnError as exc:
        raise KeyturnError(f"nornir host {host.name}: record {ref!r}: {exc}") from exc
    host.password = secret.reveal()


__all__ = ["DEFAULT_RECORD", "fill_credentials", "record_for"]
