"""`keyturn sim lab` as a real process: state file appears once up, SIGTERM stops it with exit 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyturn.cli.sim import app
from keyturn.sim.client import LabState


def _wait_for_state(proc: subprocess.Popen[bytes], path: Path, timeout: float = 60.0) -> LabState:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"lab exited early with {proc.returncode}: {proc.stderr.read()!r}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise AssertionError("lab state file never appeared")
        time.sleep(0.05)  # polling a file another process writes; there is no event to wait on
    return LabState.load(path)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_sim_lab_subprocess_sigterm_exits_zero(tmp_path: Path) -> None:
    state_file = tmp_path / "lab.json"
    state_file.write_text("{}")  # a stale file from an earlier run must not be mistaken for this one
    cmd = [sys.executable, "-m", "keyturn.cli.sim", "lab", "--iosxe", "2", "--meraki-orgs", "1",
           "--seed", "3", "--state-file", str(state_file), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while state_file.exists() and state_file.read_text() == "{}" and time.monotonic() < deadline:
            time.sleep(0.05)
        state = _wait_for_state(proc, state_file)
        assert state.extra["pid"] == proc.pid
        assert [d.name for d in state.iosxe] == ["sw0001", "sw0002"]
        control_port = int(state.control_url.rsplit(":", 1)[1])
        ports = [state.iosxe[0].restconf_port, state.iosxe[0].ssh_port, control_port]
        assert all(p is not None and _port_open(p) for p in ports)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(proc.pid, 0)
        assert not any(p is not None and _port_open(p) for p in ports)
        assert state_file.exists()  # the user asked for it; stopping keeps it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_sim_lab_cli_rejects_unknown_fault_switch(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["lab", "--iosxe", "1", "--meraki-orgs", "0", "--no-ssh",
                                      "--fault", "latnecy=0.5", "--state-file", str(tmp_path / "s.json")])
    assert result.exit_code == 1
    assert "latnecy" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "s.json").exists()


def test_sim_lab_cli_rejects_malformed_fault(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["lab", "--fault", "latency"])
    assert result.exit_code == 1
    assert "SWITCH=VALUE" in result.output
