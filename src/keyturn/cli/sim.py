"""`keyturn sim iosxe|meraki|lab`: run simulators in the foreground until SIGINT/SIGTERM.

Each command builds a plan (`sim.lab.make_plan`), runs it with `sim.lab.Lab` and, with
`--state-file`, writes the lab state (ports, initial credentials, CA) once every listener is up.
`keyturn sim lab --records-file F` also writes the records that onboard the lab (`keyturn.demo.lab_records`,
what `make demo` imports) for `keyturn record import F`, before the state file.
Passwords given on the command line are simulator test data; generated ones go only to the state
file (mode 0600), never to the console.

Device realism switches (`sim.iosxe_profile`) are flags of `lab` and `iosxe`, applied to every device
over whatever the plan gives it: `--aaa tacacs-first --max-fail 3 --block-for 120,5,60
--exec-authorization false --password-encryption --omit-privilege-1 --cert ios-self-signed
--ssh-profile ios-legacy --latency realistic --save-delay 3 --sync-window 2 --tacacs-timeout 2`.
`keyturn sim lab --profile enterprise` plans a realistic network (see `sim.lab`); `--latency 0` then
makes it fast for tests. The control API changes switches per device at run time.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from keyturn.sim.client import LabState
    from keyturn.sim.lab import LabOptions

app = typer.Typer(name="sim", help="Run device simulators (IOS XE RESTCONF + SSH, Meraki Dashboard API).",
                  no_args_is_help=True)

StateFile = Annotated[Path | None, typer.Option("--state-file", help="Write the lab state (JSON, 0600).")]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed for names and passwords (reproducible lab).")]
Host = Annotated[str, typer.Option("--host", help="Address every listener binds to.")]
FaultOpt = Annotated[list[str] | None, typer.Option(
    "--fault", help="SWITCH=VALUE applied to every device/org at start (repeatable), e.g. latency=0.2.")]
ControlPort = Annotated[int, typer.Option("--control-port", help="Control API port (0 = ephemeral).")]
Aaa = Annotated[str | None, typer.Option(
    "--aaa", help="local | tacacs-first (TACACS+ rejects local users) | tacacs-down (local, delayed).")]
MaxFail = Annotated[int | None, typer.Option(
    "--max-fail", min=1, help="aaa local authentication attempts max-fail N (lock a user after N).")]
BlockFor = Annotated[str | None, typer.Option(
    "--block-for", help="S,N,T: login block-for S attempts N within T (quiet mode).")]
ExecAuthorization = Annotated[str | None, typer.Option(
    "--exec-authorization", help="false: aaa new-model, no exec authorization (privilege 15 lands in >).")]
PasswordEncryption = Annotated[bool | None, typer.Option(
    "--password-encryption/--no-password-encryption", help="service password-encryption (type 0 → 7).")]
OmitPrivilege1 = Annotated[bool | None, typer.Option(
    "--omit-privilege-1/--show-privilege-1", help="username lines without privilege 1, as real IOS.")]
Cert = Annotated[str | None, typer.Option(
    "--cert", help="lab-ca | self-signed | ios-self-signed (CN=IOS-Self-Signed-Certificate-<n>, no SAN).")]
SshProfileOpt = Annotated[str | None, typer.Option(
    "--ssh-profile", help="default | ios-17 | ios-legacy (group14-sha1, ssh-rsa, hmac-sha1 only).")]
LatencyOpt = Annotated[str | None, typer.Option(
    "--latency", help="realistic (RESTCONF 0.1-0.4 s, save 2.5-3.7 s, SSH login ~1 s) or 0.")]
SaveDelay = Annotated[float | None, typer.Option("--save-delay", min=0, help="Seconds save-config takes.")]
SyncWindow = Annotated[float | None, typer.Option(
    "--sync-window", min=0, help="Seconds RESTCONF writes get 409 after a CLI change.")]
TacacsTimeout = Annotated[float | None, typer.Option(
    "--tacacs-timeout", min=0, help="Seconds an unreachable TACACS+ server is waited.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _parse_faults(items: list[str] | None) -> dict[str, Any]:
    faults: dict[str, Any] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise _fail(f"--fault expects SWITCH=VALUE, got {item!r}")
        try:
            faults[name.strip()] = json.loads(raw)
        except ValueError:
            faults[name.strip()] = raw
    return faults


def _profile_switches(**flags: Any) -> dict[str, Any]:
    """The switches given on the command line (None = not given), checked now for a one-line error."""
    from keyturn.errors import SimulatorError
    from keyturn.sim.iosxe_profile import DeviceProfile

    switches = {name: value for name, value in flags.items() if value is not None}
    try:
        DeviceProfile().updated(switches)
    except SimulatorError as exc:
        raise _fail(str(exc)) from None
    return switches


def _rss_mib() -> float:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 0.0
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024


def _summary(state: LabState, startup: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    if 0 < len(state.iosxe) <= 20:
        table = Table("device", "restconf", "ssh", title="IOS XE")
        for d in state.iosxe:
            table.add_row(d.name, f"https://{d.host}:{d.restconf_port}" if d.restconf_port else "-",
                          f"{d.host}:{d.ssh_port}" if d.ssh_port else "-")
        console.print(table)
    elif state.iosxe:
        console.print(f"IOS XE: {len(state.iosxe)} devices on {state.iosxe[0].host}")
    if state.meraki is not None:
        console.print(f"Meraki: {len(state.meraki.orgs)} org(s) at {state.meraki.base_url}"
                      + (f", proxy {state.meraki.proxy_url}" if state.meraki.proxy_url else ""))
    console.print(f"control API: {state.control_url}   CA: {state.ca_cert}")
    console.print(f"up in {startup:.2f} s, RSS {_rss_mib():.0f} MiB; Ctrl-C or SIGTERM stops")


async def _serve(plan: LabState, options: LabOptions, *, quiet: bool, records_file: Path | None = None,
                 state_file: Path | None = None) -> None:
    """Run the lab until a signal; with `records_file`, write it and then `state_file` once it is up."""
    from keyturn.sim.lab import Lab

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    lab = Lab(plan, options)
    try:
        state = await lab.start()
        if records_file is not None:
            from keyturn.demo import lab_records, write_records_file

            write_records_file(records_file, lab_records(state))
            if state_file is not None:
                state.write(state_file)
        if not quiet:
            _summary(state, lab.startup_seconds)
        await stop.wait()
    finally:
        await lab.stop()


def _lab_ca(state_file: Path) -> Path:
    """Where a lab with this state file keeps its CA (`sim.lab`: next to it, `<stem>-ca.pem`)."""
    resolved = state_file.resolve()
    return resolved.with_name(f"{resolved.stem}-ca.pem")


def _run(plan: LabState, options: LabOptions, *, quiet: bool = False, records_file: Path | None = None
         ) -> None:
    from dataclasses import replace

    from keyturn.errors import KeyturnError

    state_file = None
    if records_file is not None:
        # The state file is written last, so whoever waits for it finds the records file complete too.
        records_file.unlink(missing_ok=True)
        state_file = options.state_file
        if state_file is not None:
            state_file.unlink(missing_ok=True)
            options = replace(options, state_file=None, ca_cert=options.ca_cert or _lab_ca(state_file))
    try:
        asyncio.run(_serve(plan, options, quiet=quiet, records_file=records_file, state_file=state_file))
    except KeyturnError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot start the simulator: {exc.strerror or exc}") from None


def _ca_path(ca_dir: Path | None) -> Path | None:
    return None if ca_dir is None else ca_dir.resolve() / "ca.pem"


@app.command()
def lab(
    iosxe: Annotated[int, typer.Option("--iosxe", min=0, help="Number of IOS XE devices.")] = 3,
    meraki_orgs: Annotated[int, typer.Option("--meraki-orgs", min=0, help="Number of Meraki orgs.")] = 1,
    networks_per_org: Annotated[int, typer.Option("--networks-per-org", min=0)] = 1,
    users_per_network: Annotated[int, typer.Option("--users-per-network", min=0)] = 2,
    users_per_device: Annotated[int, typer.Option("--users-per-device", min=0)] = 2,
    ssids_per_network: Annotated[int, typer.Option(
        "--ssids-per-network", min=0, max=14,
        help="Configured SSIDs per Meraki network (1..N, in turn: PSK, identity PSK, 802.1X, open).")] = 0,
    state_file: StateFile = None,
    records_file: Annotated[Path | None, typer.Option(
        "--records-file", help="Also write the records that onboard this lab (devices, admins, users, "
                               "Meraki networks; `keyturn record import FILE`; JSON, 0600).")] = None,
    seed: Seed = None,
    host: Host = "127.0.0.1",
    no_ssh: Annotated[bool, typer.Option("--no-ssh", help="Do not start SSH listeners.")] = False,
    no_restconf: Annotated[bool, typer.Option("--no-restconf", help="Do not start RESTCONF.")] = False,
    fault: FaultOpt = None,
    control_port: ControlPort = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary on stderr.")] = False,
    profile: Annotated[str, typer.Option(
        "--profile", help="default | enterprise (realistic: TACACS+, lockouts, type 5, ...).")] = "default",
    aaa: Aaa = None,
    max_fail: MaxFail = None,
    block_for: BlockFor = None,
    exec_authorization: ExecAuthorization = None,
    password_encryption: PasswordEncryption = None,
    omit_privilege_1: OmitPrivilege1 = None,
    cert: Cert = None,
    ssh_profile: SshProfileOpt = None,
    latency: LatencyOpt = None,
    save_delay: SaveDelay = None,
    sync_window: SyncWindow = None,
    tacacs_timeout: TacacsTimeout = None,
    key_propagation: Annotated[float, typer.Option(
        "--meraki-key-propagation", min=0, max=3600,
        help="Seconds a newly generated Meraki API key answers 401 (Meraki: up to 5 minutes).")] = 0.0,
) -> None:
    """Run many IOS XE devices and Meraki orgs in one process, with the control API."""
    from keyturn.sim.lab import LAB_PROFILES, LabOptions, make_plan

    if profile not in LAB_PROFILES:
        raise _fail(f"--profile must be one of {', '.join(LAB_PROFILES)}")
    switches = _profile_switches(
        aaa=aaa, max_fail=max_fail, block_for=block_for, exec_authorization=exec_authorization,
        password_encryption=password_encryption, omit_privilege_1=omit_privilege_1, cert=cert,
        ssh_profile=ssh_profile, latency=latency, save_delay=save_delay, sync_window=sync_window,
        tacacs_timeout=tacacs_timeout)
    plan = make_plan(iosxe=iosxe, meraki_orgs=meraki_orgs, networks_per_org=networks_per_org,
                     users_per_network=users_per_network, users_per_device=users_per_device, seed=seed,
                     host=host, profile=profile, ssids_per_network=ssids_per_network)
    options = LabOptions(host=host, ssh=not no_ssh, restconf=not no_restconf, faults=_parse_faults(fault),
                         state_file=state_file, control_port=control_port, profile=switches,
                         meraki_key_propagation=key_propagation)
    _run(plan, options, quiet=quiet, records_file=records_file)


def _login(value: str, option: str) -> tuple[str, str, int | None]:
    """Parse `U:P` or `U:P:PRIV` (the password may itself contain ':' when PRIV is given)."""
    head, sep, tail = value.rpartition(":")
    if sep and tail.isdigit() and ":" in head:
        user, _, password = head.partition(":")
        priv: int | None = int(tail)
    else:
        user, _, password = value.partition(":")
        priv = None
    if not user or not password:
        raise _fail(f"{option} expects USER:PASSWORD[:PRIV]")
    return user, password, priv


@app.command()
def iosxe(
    name: Annotated[str, typer.Option("--name", help="Device name (hostname, cert SAN).")] = "sw0001",
    restconf_port: Annotated[int, typer.Option("--restconf-port", help="0 = ephemeral.")] = 0,
    ssh_port: Annotated[int, typer.Option("--ssh-port", help="0 = ephemeral.")] = 0,
    user: Annotated[list[str] | None, typer.Option(
        "--user", help="USER:PASSWORD:PRIV, a `secret` user (repeatable; replaces generated users).")] = None,
    admin: Annotated[str | None, typer.Option("--admin", help="USER:PASSWORD of the admin.")] = None,
    enable_secret: Annotated[str | None, typer.Option("--enable-secret")] = None,
    ca_dir: Annotated[Path | None, typer.Option(
        "--ca-dir", help="Create a test CA here (ca.pem) and sign the device cert with it; "
                         "default: the device's own one-off CA.")] = None,
    state_file: StateFile = None,
    seed: Seed = None,
    host: Host = "127.0.0.1",
    no_ssh: Annotated[bool, typer.Option("--no-ssh")] = False,
    no_restconf: Annotated[bool, typer.Option("--no-restconf")] = False,
    fault: FaultOpt = None,
    control_port: ControlPort = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    aaa: Aaa = None,
    max_fail: MaxFail = None,
    block_for: BlockFor = None,
    exec_authorization: ExecAuthorization = None,
    password_encryption: PasswordEncryption = None,
    omit_privilege_1: OmitPrivilege1 = None,
    cert: Cert = None,
    ssh_profile: SshProfileOpt = None,
    latency: LatencyOpt = None,
    save_delay: SaveDelay = None,
    sync_window: SyncWindow = None,
    tacacs_timeout: TacacsTimeout = None,
) -> None:
    """Run one simulated Cisco IOS XE device (RESTCONF over HTTPS and SSH CLI)."""
    from keyturn.sim.client import IosXeUser, Login
    from keyturn.sim.lab import LabOptions, make_plan

    plan = make_plan(iosxe=1, meraki_orgs=0, seed=seed, host=host)
    entry = plan.iosxe[0]
    entry.name, entry.restconf_port, entry.ssh_port = name, restconf_port, ssh_port
    if user:
        entry.users = []
        for item in user:
            u, p, priv = _login(item, "--user")
            entry.users.append(IosXeUser(u, p, privilege=15 if priv is None else priv))
    if admin:
        u, p, _ = _login(admin, "--admin")
        entry.admin = Login(u, p)
    if enable_secret:
        entry.enable_secret = enable_secret
    switches = _profile_switches(
        aaa=aaa, max_fail=max_fail, block_for=block_for, exec_authorization=exec_authorization,
        password_encryption=password_encryption, omit_privilege_1=omit_privilege_1, cert=cert,
        ssh_profile=ssh_profile, latency=latency, save_delay=save_delay, sync_window=sync_window,
        tacacs_timeout=tacacs_timeout)
    options = LabOptions(host=host, ssh=not no_ssh, restconf=not no_restconf, faults=_parse_faults(fault),
                         tls="lab-ca" if ca_dir else "self-signed", ca_cert=_ca_path(ca_dir),
                         state_file=state_file, control_port=control_port, profile=switches)
    _run(plan, options, quiet=quiet)


@app.command()
def meraki(
    port: Annotated[int, typer.Option("--port", help="Dashboard API port (0 = ephemeral).")] = 0,
    proxy_port: Annotated[int, typer.Option("--proxy-port", help="HTTPS CONNECT proxy port.")] = 0,
    orgs: Annotated[int, typer.Option("--orgs", min=1, help="Number of organisations.")] = 1,
    networks_per_org: Annotated[int, typer.Option("--networks-per-org", min=0)] = 1,
    users_per_network: Annotated[int, typer.Option("--users-per-network", min=0)] = 2,
    rate_per_org: Annotated[float, typer.Option("--rate-per-org", help="Requests/s per org.")] = 10.0,
    rate_per_ip: Annotated[float, typer.Option("--rate-per-ip", help="Requests/s per source IP.")] = 100.0,
    no_proxy: Annotated[bool, typer.Option("--no-proxy", help="Do not start the CONNECT proxy.")] = False,
    ca_dir: Annotated[Path | None, typer.Option(
        "--ca-dir", help="Write the proxy's test CA here (ca.pem).")] = None,
    state_file: StateFile = None,
    seed: Seed = None,
    host: Host = "127.0.0.1",
    fault: FaultOpt = None,
    control_port: ControlPort = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    key_propagation: Annotated[float, typer.Option(
        "--meraki-key-propagation", min=0, max=3600,
        help="Seconds a newly generated Meraki API key answers 401 (Meraki: up to 5 minutes).")] = 0.0,
) -> None:
    """Run a simulated Meraki Dashboard API with ORGS organisations (and its CONNECT proxy)."""
    from keyturn.sim.lab import LabOptions, make_plan

    plan = make_plan(iosxe=0, meraki_orgs=orgs, networks_per_org=networks_per_org,
                     users_per_network=users_per_network, seed=seed, host=host)
    options = LabOptions(host=host, faults=_parse_faults(fault), state_file=state_file,
                         ca_cert=_ca_path(ca_dir), meraki_port=port, proxy_port=proxy_port,
                         proxy=not no_proxy, control_port=control_port, meraki_rate_per_org=rate_per_org,
                         meraki_rate_per_ip=rate_per_ip, meraki_key_propagation=key_propagation)
    _run(plan, options, quiet=quiet)


def _named(item: Any, name: str) -> bool:
    return isinstance(item, dict) and name in (item.get("name"), item.get("id"), item.get("email"),
                                               item.get("username"))


def _lookup(data: Any, key: str) -> Any:
    """The value at a dotted `key`: a list element by index or by its name/id/email
    (`iosxe.0.ssh_port`, `iosxe.sw0001.ssh_port`, `meraki.orgs.0.networks.0.id`)."""
    value = data
    walked: list[str] = []
    for part in key.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, list) and any(_named(v, part) for v in value):
            value = next(v for v in value if _named(v, part))
        else:
            where = ".".join(walked) or "the top level"
            if isinstance(value, dict):
                known = ", ".join(sorted(value))
            elif isinstance(value, list):
                known = f"an index 0-{len(value) - 1} or a name" if value else "nothing (empty list)"
            else:
                known = "nothing (a value)"
            raise _fail(f"no {part!r} under {where}; there is {known}", code=2)
        walked.append(part)
    return value


@app.command("get")
def get(
    state_file: Annotated[Path, typer.Argument(help="The lab's state file (--state-file of sim lab).",
                                               show_default=False)],
    key: Annotated[str, typer.Argument(help="Dotted key: iosxe.0.restconf_port, iosxe.sw0001.admin.password, "
                                            "ca_cert, control_url, meraki.api_key.", show_default=False)],
    wait: Annotated[float, typer.Option("--wait", min=0, help="Seconds to wait for the file to appear "
                                                             "(a lab writes it once it is up).")] = 60.0,
) -> None:
    """Print one value of a lab's state file (strings as they are, anything else as JSON).

    For scripts and the README's quick tour: `PORT=$(keyturn sim get lab.json iosxe.0.restconf_port)`,
    `keyturn sim get lab.json iosxe.0.admin.password | keyturn record add ... --password -`. The file
    holds the lab's initial passwords (simulator test data, mode 0600)."""
    import time

    deadline = time.monotonic() + wait
    while not state_file.exists():
        if time.monotonic() >= deadline:
            raise _fail(f"lab state {state_file} did not appear within {wait:g} s (is the lab running?)")
        time.sleep(0.1)
    try:
        data = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot read lab state {state_file}: {type(exc).__name__}") from None
    value = _lookup(data, key)
    typer.echo(value if isinstance(value, str) else json.dumps(value))


if __name__ == "__main__":  # `python -m keyturn.cli.sim lab ...` works without the main CLI
    app()
