"""Issue 18, item 5: the systemd units (checked by `systemd-analyze verify` where it exists), the
Containerfile and the compose file (linted: no image builder runs in the tests) and the alert rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import keyturn.api.metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = ("keyturn.service", "keyturn-worker@.service")
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
             "CapabilityBoundingSet": "", "DynamicUser": "yes", "ReadWritePaths": "/var/lib/keyturn",
             "StateDirectory": "keyturn", "UMask": "0077"}


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Key → values of a unit file ([Service] keys may repeat)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("unit", UNITS)
def test_units_are_hardened(unit: str) -> None:
    found = unit_settings(DEPLOY / unit)
    for key, value in HARDENING.items():
        assert value in found.get(key, []), (unit, key)
    assert "User" not in found  # DynamicUser: never root, no account to manage
    command = found["ExecStart"][0].split()
    assert command[0].endswith("/keyturn")
    assert command[1] == ("serve" if unit == "keyturn.service" else "worker")


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here: the units were checked for their keys only")
    binary = tmp_path / "keyturn"  # verify insists the ExecStart binary exists and is executable
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    name = unit.replace("@.", "@default.")   # a template is verified as one of its instances
    copy = tmp_path / name
    copy.write_text((DEPLOY / unit).read_text().replace("/usr/local/bin/keyturn", str(binary)))
    proc = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True, timeout=60,
                          check=False)
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if name in line]
    assert proc.returncode == 0 and ours == [], proc.stdout + proc.stderr


def containerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Containerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_containerfile_is_multi_stage_non_root_and_health_checked() -> None:
    steps = containerfile()
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) >= 2
    assert all(re.search(r" AS \w+$", s, re.I) for s in stages)
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM"):]
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(w == "COPY" and args.startswith("--from=build") for w, args in final)
    assert not any(w == "RUN" and "pip install" in args for w, args in final)   # built in the first stage
    checks = [args for word, args in final if word == "HEALTHCHECK"]
    assert len(checks) == 1
    # `keyturn doctor` where the tree has it (checks everything, warnings exit 0), else the vault's status
    doctor = (ROOT / "src" / "keyturn" / "cli" / "doctor.py").exists()
    assert re.search(r'CMD \["keyturn", "doctor"\]$' if doctor else r"$^", checks[0]) or re.search(
        r'CMD \["keyturn", "vault", "status"\]$', checks[0]), checks[0]
    assert ("ENTRYPOINT", '["keyturn"]') in final
    env = " ".join(args for word, args in final if word == "ENV")
    assert "KEYTURN_HOME=/var/lib/keyturn" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    assert ("VOLUME", '["/var/lib/keyturn"]') in final   # the only place written: read-only root works


def test_compose_runs_serve_a_worker_postgresql_and_redis() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"keyturn", "worker", "postgres", "redis"}
    assert services["keyturn"]["command"] == ["serve"]
    assert services["worker"]["command"][0] == "worker"
    for name in ("keyturn", "worker"):
        svc = services[name]
        assert svc["read_only"] is True and svc["user"].split(":")[0] not in ("0", "root")
        assert svc["cap_drop"] == ["ALL"]
        assert svc["build"]["dockerfile"] == "deploy/Containerfile"
        assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        env = svc["environment"]
        assert env["KEYTURN_DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env[
            "KEYTURN_DATABASE_URL"]
        assert env["KEYTURN_BROKER_URL"].startswith("redis://redis:")
        assert set(svc["depends_on"]) == {"postgres", "redis"}
    serve_env = services["keyturn"]["environment"]
    assert serve_env["KEYTURN_SERVE_HOST"] == "0.0.0.0"   # so TLS is required: cert and key are set
    assert serve_env["KEYTURN_SERVE_CERT"].startswith("/run/secrets/")
    assert serve_env["KEYTURN_SERVE_KEY"].startswith("/run/secrets/")
    for svc in ("postgres", "redis"):
        assert "healthcheck" in services[svc]
    assert "${KEYTURN_DB_PASSWORD:?" in (DEPLOY / "compose.yaml").read_text()   # no password in the file


def test_alert_rules_use_metrics_keyturn_exports() -> None:
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    exported = set(re.findall(r"^\s+(keyturn_[a-z_]+)", keyturn.api.metrics.__doc__ or "", re.M))
    assert "keyturn_rotations_total" in exported
    seen = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert {"alert", "expr", "labels", "annotations"} <= set(rule)
            for metric in re.findall(r"keyturn_[a-z_]+", rule["expr"]):
                assert metric in exported, (rule["alert"], metric)
            seen += 1
    assert seen >= 5


def _image_builder() -> list[str] | None:
    """podman, or docker with a daemon that answers; None where neither can build."""
    for tool in ("podman", "docker"):
        path = shutil.which(tool)
        if path is None:
            continue
        if subprocess.run([path, "info"], capture_output=True, timeout=30, check=False).returncode == 0:
            return [path]
    return None


def test_the_image_builds_where_a_builder_is_available(tmp_path: Path) -> None:
    builder = _image_builder()
    if builder is None:
        pytest.skip("no podman and no reachable docker daemon here: the Containerfile is linted only")
    tag = f"keyturn-test:{tmp_path.name.lower()}"
    built = subprocess.run([*builder, "build", "-f", str(DEPLOY / "Containerfile"), "-t", tag, str(ROOT)],
                           capture_output=True, text=True, timeout=1800, check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    try:
        ran = subprocess.run([*builder, "run", "--rm", "--read-only", "--tmpfs", "/tmp", tag, "--version"],
                             capture_output=True, text=True, timeout=120, check=False)
        assert ran.returncode == 0 and ran.stdout.startswith("keyturn "), ran.stdout + ran.stderr
    finally:
        subprocess.run([*builder, "rmi", "-f", tag], capture_output=True, timeout=120, check=False)
