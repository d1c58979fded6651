"""The post-rotation script runner against real processes: payload, environment, every bad input."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from keyturn.errors import RecordNotFound
from keyturn.scripts.attachments import ScriptAttachment, to_meta
from keyturn.scripts.payload import PAYLOAD_KEYS, build_payload
from keyturn.scripts.runner import OUTPUT_LIMIT, ScriptResult, run_rotation_scripts, run_script
from keyturn.secret import Secret
from tests.script_records import F, R

NEW = "N3w-S3cret!value"
OLD = "0ld-S3cret!value"
API_KEY = "6bec40cf957de430a6f1f2baf056b99a4fac9ea0"
SECRETS = (NEW, OLD, API_KEY)




def script(tmp: Path, name: str, body: str, *, shebang: str | None = None, mode: int = 0o755) -> Path:
    path = tmp / name
    head = f"#!{sys.executable}\n" if shebang is None else shebang
    path.write_text(head + body)
    path.chmod(mode)
    return path


def payload_for(extra_field: str = "") -> bytes:
    user = R("USER", "u", fields=[F("login", value=["developer"]), F("password", value=[Secret(OLD)])],
             custom=[F("text", label="blob", value=[extra_field])] if extra_field else [])
    return build_payload(provider=R("PROV", "cfg"), resource=None, user=user, extra=[],
                         new_password=Secret(NEW), old_password=Secret(OLD), user_login="developer")


async def run(att: ScriptAttachment, payload: bytes | None = None,
              base_env: Mapping[str, str] | None = None) -> ScriptResult:
    return await run_script(att, payload if payload is not None else payload_for(),
                            secrets=[Secret(s) for s in SECRETS], base_env=base_env or {"PATH": os.defpath})


def assert_no_secret(result: ScriptResult) -> None:
    text = json.dumps(result.to_dict())
    for value in SECRETS:
        assert value not in text


DUMP = """
import json, os, sys
data = sys.stdin.buffer.read()
out = os.environ["PROBE_OUT"]
with open(out, "wb") as fh:
    fh.write(data)
with open(out + ".ctx", "w") as fh:
    json.dump({"env": dict(os.environ), "argv": sys.argv, "cwd": os.getcwd()}, fh)
"""


async def test_payload_byte_for_byte_order_and_flattening(tmp_path: Path) -> None:
    probe = script(tmp_path, "probe.py", DUMP)
    out = tmp_path / "received"
    att = ScriptAttachment(str(probe), with_records=("AUTH", "NOTE"), env={"PROBE_OUT": str(out)})
    provider = R("PROV", "PAM Configuration", "pamConfiguration",
                 custom=[F("text", label="site", value=["lab"])])
    resource = R("RES", "Router 1", "pamNetworkDevice",
                 fields=[F("host", value=[{"hostName": "10.0.0.1", "port": "443"}])],
                 custom=[F("text", label="host_endpoint", value=["10.0.0.1"]),
                         F("text", label="host_endpoint", value=["10.0.0.9"])])
    auth = R("AUTH", "Cisco Authentication Record",
             fields=[F("login", value=["admin"]), F("password", value=[Secret(API_KEY)])],
             custom=[F("text", label="network_id", value=["N_1"])])
    note = R("NOTE", "Note", fields=[F("text", label="tags", value=["a", "b"]), F("url", value=[])])
    user = R("USER", "developer", "pamUser",
             fields=[F("login", value=["developer"]), F("password", value=[Secret(OLD)])],
             meta={"scripts": to_meta([att])})
    by_uid = {"AUTH": auth, "NOTE": note}
    [result] = await run_rotation_scripts(
        get_record=by_uid.__getitem__, provider=provider, resource=resource, user=user,
        new_password=Secret(NEW), old_password=Secret(OLD), base_env={"PATH": os.defpath},
    )
    assert result.ok, result.error
    assert result.owner_uid == "USER" and result.name == "probe.py" and result.exit_code == 0
    raw = out.read_bytes()
    expected = build_payload(provider=provider, resource=resource, user=user, extra=[auth, note],
                             new_password=Secret(NEW), old_password=Secret(OLD), user_login="developer")
    assert raw == expected
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    obj = json.loads(base64.b64decode(raw.strip(), validate=True))
    assert tuple(obj) == PAYLOAD_KEYS
    uids = (obj["providerRecordUid"], obj["resourceRecordUid"], obj["userRecordUid"])
    assert uids == ("PROV", "RES", "USER")
    assert (obj["newPassword"], obj["oldPassword"], obj["user"]) == (NEW, OLD, "developer")
    records = json.loads(base64.b64decode(obj["records"], validate=True))
    assert [r["uid"] for r in records] == ["PROV", "RES", "AUTH", "NOTE", "USER"]
    assert records[0] == {"uid": "PROV", "title": "PAM Configuration", "site": "lab"}
    assert records[1] == {"uid": "RES", "title": "Router 1", "host": {"hostName": "10.0.0.1", "port": "443"},
                          "host_endpoint": "10.0.0.1", "host_endpoint2": "10.0.0.9"}
    assert records[2] == {"uid": "AUTH", "title": "Cisco Authentication Record", "login": "admin",
                          "password": API_KEY, "network_id": "N_1"}
    assert records[3] == {"uid": "NOTE", "title": "Note", "tags": ["a", "b"]}
    assert records[4] == {"uid": "USER", "title": "developer", "login": "developer", "password": NEW}
    ctx = json.loads((tmp_path / "received.ctx").read_text())
    assert ctx["argv"] == [str(probe)]
    assert not Path(ctx["cwd"]).exists(), "private working dir must be removed"
    assert ctx["env"]["TMPDIR"] == ctx["cwd"]


async def test_environment_is_minimal_plus_proxy_and_extras(tmp_path: Path) -> None:
    probe = script(tmp_path, "probe.py", DUMP)
    out = tmp_path / "received"
    base = {
        "PATH": os.defpath, "HOME": str(tmp_path), "LANG": "C.UTF-8",
        "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "localhost", "REQUESTS_CA_BUNDLE": "/ca.pem",
        "KEYTURN_MASTER_KEY": "c2VjcmV0", "AWS_SECRET_ACCESS_KEY": "x", "PYTHONPATH": "/nope",
    }
    att = ScriptAttachment(str(probe), env={"PROBE_OUT": str(out), "LANG": "en_US.UTF-8"})
    result = await run(att, base_env=base)
    assert result.ok, result.error
    env = json.loads((tmp_path / "received.ctx").read_text())["env"]
    env.pop("LC_CTYPE", None)  # the interpreter may add it on start-up
    assert set(env) == {"PATH", "HOME", "LANG", "TMPDIR", "HTTPS_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE",
                        "PROBE_OUT"}
    assert env["LANG"] == "en_US.UTF-8"
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:9"


async def test_no_secret_in_argv_or_environment_of_a_running_child(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    probe = script(tmp_path, "sleeper.py", f"""
import os, sys, time
open({str(tmp_path / 'pid')!r}, "w").write(str(os.getpid()))
while not os.path.exists({str(gate)!r}):
    time.sleep(0.01)
""")
    task = asyncio.create_task(run(ScriptAttachment(str(probe), prefix=sys.executable)))
    pid_file = tmp_path / "pid"
    for _ in range(1000):
        if pid_file.exists() and pid_file.read_text():
            break
        await asyncio.sleep(0.01)
    pid = int(pid_file.read_text())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    gate.touch()
    result = await task
    assert result.ok, result.error
    assert cmdline.split(b"\0")[:2] == [sys.executable.encode(), str(probe).encode()]
    for value in SECRETS:
        assert value.encode() not in cmdline
        assert value.encode() not in environ


async def test_script_printing_secrets_is_redacted(tmp_path: Path) -> None:
    probe = script(tmp_path, "leak.py", """
import base64, json, sys
line = sys.stdin.readline()
p = json.loads(base64.b64decode(line))
recs = json.loads(base64.b64decode(p["records"]))
print("new", p["newPassword"], "old", p["oldPassword"])
print("record", recs[-1]["password"], json.dumps(p))
print("b64", base64.b64encode(p["newPassword"].encode()).decode())
print("stdin", line.strip())
print("records", p["records"], file=sys.stderr)
""")
    result = await run(ScriptAttachment(str(probe)))
    assert result.ok, result.error
    assert_no_secret(result)
    assert "new ******** old ********" in result.stdout
    assert "stdin ********" in result.stdout
    assert "records ********" in result.stderr


@pytest.mark.parametrize(
    ("name", "setup", "expected"),
    [
        ("missing", lambda t: t / "nope.py", "script not found"),
        ("not executable", lambda t: script(t, "s.py", "print(1)\n", mode=0o644), "chmod +x"),
        ("no shebang", lambda t: script(t, "s.sh", "echo hi\n", shebang=""), "has no '#!' line"),
        ("crlf", lambda t: script(t, "s.sh", "echo hi\r\n", shebang="#!/bin/sh\r\n"), "carriage return"),
        ("missing interpreter", lambda t: script(t, "s.sh", "x\n", shebang="#!/nonexistent/python9\n"),
         "interpreter '/nonexistent/python9' not found"),
        ("env command missing", lambda t: script(t, "s.sh", "x\n", shebang="#!/usr/bin/env python9-nope\n"),
         "'python9-nope'"),
        ("directory", lambda t: t, "not a regular file"),
    ],
)
async def test_bad_script_gives_a_clear_error(tmp_path: Path, name: str, setup: Any, expected: str) -> None:
    path = setup(tmp_path)
    result = await run(ScriptAttachment(str(path)))
    assert not result.ok and result.exit_code is None
    assert result.error is not None and expected in result.error, result.error


async def test_interpreter_path_with_a_space_explains_the_fix(tmp_path: Path) -> None:
    bindir = tmp_path / "my python" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "python3").symlink_to(sys.executable)
    path = script(tmp_path, "s.py", "print('hi')\n", shebang=f"#!{bindir / 'python3'}\n")
    result = await run(ScriptAttachment(str(path)))
    assert not result.ok
    assert result.error is not None
    assert "splits the shebang at the first space" in result.error and "--prefix" in result.error
    # and the suggested fix works
    fixed = await run(ScriptAttachment(str(path), prefix=f"'{bindir / 'python3'}'"))
    assert fixed.ok, fixed.error
    assert fixed.stdout == "hi\n"


async def test_prefix_not_found(tmp_path: Path) -> None:
    path = script(tmp_path, "s.py", "print(1)\n")
    result = await run(ScriptAttachment(str(path), prefix="python9-nope -u"))
    assert result.error is not None and result.error.startswith("prefix not found: 'python9-nope'")
    result = await run(ScriptAttachment(str(path), prefix="/nonexistent/pwsh -File"))
    assert result.error is not None and "'/nonexistent/pwsh' is not an executable file" in result.error


async def test_prefix_runs_a_non_executable_script(tmp_path: Path) -> None:
    path = script(tmp_path, "s.py", "import sys; print(sys.argv[1:])\n", shebang="", mode=0o644)
    result = await run(ScriptAttachment(str(path), prefix=f"{sys.executable} -u"))
    assert result.ok, result.error
    assert result.stdout == "[]\n"


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    path = script(tmp_path, "hang.sh", f"sleep 300 &\necho $! > {tmp_path / 'child'}\nwait\n",
                  shebang="#!/bin/sh\n")
    result = await run(ScriptAttachment(str(path), timeout=0.5))
    assert not result.ok and result.exit_code is None
    assert result.error == "timeout: killed after 0.5 s (whole process group)"
    child = int((tmp_path / "child").read_text())
    assert _gone(child), "the script's background child must be killed with the group"


def _gone(pid: int) -> bool:
    # SIGKILL is delivered at once, but init may reap the orphan a moment later: a zombie counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def test_non_zero_exit_is_reported_with_output(tmp_path: Path) -> None:
    path = script(tmp_path, "fail.py", "import sys\nprint('device said no')\nsys.exit(3)\n")
    result = await run(ScriptAttachment(str(path)))
    assert (result.ok, result.exit_code, result.error) == (False, 3, "exit code 3")
    assert result.stdout == "device said no\n"


async def test_killed_by_signal(tmp_path: Path) -> None:
    path = script(tmp_path, "sig.py", "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    result = await run(ScriptAttachment(str(path)))
    assert (result.exit_code, result.error) == (-15, "killed by signal SIGTERM")


async def test_fail_on_marks_exit_zero_as_failed(tmp_path: Path) -> None:
    path = script(tmp_path, "liar.py", "print('Failed to update password. Status code: 400')\n")
    result = await run(ScriptAttachment(str(path), fail_on=(r"^Failed to update",)))
    assert (result.ok, result.exit_code) == (False, 0)
    assert result.error == "fail_on matched: '^Failed to update' (exit code 0)"
    ok = await run(ScriptAttachment(str(path), fail_on=(r"^Success",)))
    assert ok.ok


async def test_script_that_never_reads_stdin(tmp_path: Path) -> None:
    path = script(tmp_path, "deaf.sh", "echo done\n", shebang="#!/bin/sh\n")
    big = payload_for(extra_field="x" * 2_000_000)  # far beyond any pipe buffer
    result = await run(ScriptAttachment(str(path)), payload=big)
    assert result.ok, result.error
    assert result.stdout == "done\n"


async def test_huge_output_is_bounded_and_marked(tmp_path: Path) -> None:
    path = script(tmp_path, "loud.py", f"""
import sys
sys.stdout.write("a" * ({OUTPUT_LIMIT} - 5) + {NEW!r} + "b" * 5_000_000)
sys.stderr.write("e" * 10)
""")
    result = await run(ScriptAttachment(str(path)))
    assert result.ok and result.truncated
    assert len(result.stdout) < OUTPUT_LIMIT + 200
    assert "[keyturn: output truncated" in result.stdout
    assert NEW not in result.stdout and NEW[:5] not in result.stdout
    assert result.stderr == "e" * 10


async def test_secret_straddling_the_kept_head_leaves_no_fragment(tmp_path: Path) -> None:
    # The runner keeps OUTPUT_LIMIT + 4 bytes: the secret starts 2 bytes before the limit.
    path = script(tmp_path, "edge.py", f"""
import sys
sys.stdout.write("a" * ({OUTPUT_LIMIT} - 2) + {NEW!r} + "b" * 100000)
""")
    result = await run(ScriptAttachment(str(path)))
    assert result.truncated
    assert NEW[:2] not in result.stdout
    assert result.stdout.startswith("a" * 1000)


async def test_non_utf8_output_is_replaced_not_fatal(tmp_path: Path) -> None:
    path = script(tmp_path, "bytes.py", "import sys\nsys.stdout.buffer.write(b'caf\\xe9 \\xff ok\\n')\n")
    result = await run(ScriptAttachment(str(path)))
    assert result.ok
    assert result.stdout == "caf\ufffd \ufffd ok\n"


async def test_order_user_resource_provider_and_failures_do_not_stop_the_run(tmp_path: Path) -> None:
    log = tmp_path / "order.log"
    def att(tag: str, code: int = 0, **kw: Any) -> dict[str, Any]:
        path = script(tmp_path, f"{tag}.sh", f"echo {tag} >> {log}\nexit {code}\n", shebang="#!/bin/sh\n")
        return ScriptAttachment(str(path), **kw).to_meta()
    user = R("USER", "u", meta={"scripts": [att("u1", 1), att("u2")]})
    resource = R("RES", "r", meta={"scripts": [att("r1", with_records=("MISSING",)), att("r2")]})
    provider = R("PROV", "p", meta={"scripts": [att("p1")]})

    def get(uid: str) -> R:
        raise RecordNotFound(f"no record {uid}")

    results = await run_rotation_scripts(get_record=get, provider=provider, resource=resource, user=user,
                                         new_password=Secret(NEW), old_password=None)
    assert log.read_text().split() == ["u1", "u2", "r2", "p1"]
    assert [(r.name, r.owner_uid, r.ok) for r in results] == [
        ("u1.sh", "USER", False), ("u2.sh", "USER", True), ("r1.sh", "RES", False),
        ("r2.sh", "RES", True), ("p1.sh", "PROV", True),
    ]
    assert results[2].error == "additional record unavailable: no record MISSING"


async def test_shell_field_of_the_resource_is_the_default_prefix(tmp_path: Path) -> None:
    plain = script(tmp_path, "plain.py", "import sys; print('via', sys.argv[0].rsplit('/', 1)[-1])\n",
                   shebang="", mode=0o644)
    own = script(tmp_path, "own.sh", "echo own\n", shebang="#!/bin/sh\n")
    user = R("USER", "u", meta={"scripts": to_meta([ScriptAttachment(str(plain)),
                                                    ScriptAttachment(str(own), prefix="/bin/sh")])})
    resource = R("RES", "r", custom=[F("text", label="Shell", value=[sys.executable])])
    results = await run_rotation_scripts(
        get_record={}.__getitem__, provider=R("PROV", "p"), resource=resource, user=user,
        new_password=Secret(NEW), old_password=None, base_env={"PATH": os.defpath},
    )
    assert [(r.ok, r.stdout) for r in results] == [(True, "via plain.py\n"), (True, "own\n")]


async def test_any_payload_shape_is_accepted(tmp_path: Path) -> None:
    path = script(tmp_path, "cat.sh", "cat\n", shebang="#!/bin/sh\n")
    for payload in (b"hello\n", base64.b64encode(b'{"a": 1}') + b"\n", base64.b64encode(b"[1]") + b"\n"):
        result = await run(ScriptAttachment(str(path)), payload=payload)
        assert result.ok, result.error
        assert result.stdout == "********\n"  # the payload line itself is always redacted
