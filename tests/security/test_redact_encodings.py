"""Issue 12, item 10: a script that prints the new password in a common encoding does not get it into
the stored output.

The attack: a post-rotation script (a real process, reading the real stdin payload) prints the
password as HTTP Basic for some user, Python repr, JSON-in-JSON, hex, base32, HTML-escaped, and base64
unpadded or starting at byte 1 or 2 of a longer blob — the ways real scripts log requests and debug
encodings. Before the fix only the plain value, JSON, percent-encoding and aligned base64 were masked.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import sys
from pathlib import Path

import pytest

from keyturn.scripts.attachments import ScriptAttachment
from keyturn.scripts.payload import build_payload
from keyturn.scripts.redact import MASK
from keyturn.scripts.runner import ScriptResult, run_script
from keyturn.secret import Secret
from tests.script_records import F, R

# quotes, backslash, markup, a non-ASCII letter and a space: every escaping rule has work to do
NEW = 'N3w "P@ss\\w<0>rd" & \'é\' +/='
OLD = "0ld-Passw0rd-0ld"

LEAK = r'''
import base64, html, json, sys
pw = json.loads(base64.b64decode(sys.stdin.readline()))["newPassword"]
raw = pw.encode()
forms = {
    "basic": base64.b64encode(b"svc-rotation:" + raw).decode(),
    "basic_other_user": base64.b64encode(b"ab:" + raw).decode(),
    "repr": repr(pw), "repr_bytes": repr(raw), "ascii": ascii(pw),
    "json_in_json": json.dumps(json.dumps({"password": pw})),
    "hex": raw.hex(), "HEX": raw.hex().upper(),
    "base32": base64.b32encode(raw).decode(), "base32_unpadded": base64.b32encode(raw).decode().rstrip("="),
    "html": html.escape(pw), "html_noquote": html.escape(pw, quote=False),
    "b64_unpadded": base64.b64encode(raw).decode().rstrip("="),
    "b64_offset1": base64.b64encode(b"\x01" + raw + b"\x02\x03").decode(),
    "b64_offset2": base64.b64encode(b"\x01\x02" + raw + b"\x03").decode(),
    "b64url_offset1": base64.urlsafe_b64encode(b"Z" + raw).decode(),
}
for name, text in forms.items():
    print(f"{name}: {text}")
'''


def encodings(pw: str) -> dict[str, str]:
    """What the script prints, recomputed here; each must be gone from the result."""
    raw = pw.encode()
    return {
        "basic": base64.b64encode(b"svc-rotation:" + raw).decode(),
        "basic_other_user": base64.b64encode(b"ab:" + raw).decode(),
        "repr": repr(pw), "repr_bytes": repr(raw), "ascii": ascii(pw),
        "json_in_json": json.dumps(json.dumps({"password": pw})),
        "hex": raw.hex(), "HEX": raw.hex().upper(),
        "base32": base64.b32encode(raw).decode(),
        "html": html.escape(pw), "html_noquote": html.escape(pw, quote=False),
        "b64_unpadded": base64.b64encode(raw).decode().rstrip("="),
        "b64_offset1": base64.b64encode(b"\x01" + raw + b"\x02\x03").decode(),
        "b64_offset2": base64.b64encode(b"\x01\x02" + raw + b"\x03").decode(),
        "b64url_offset1": base64.urlsafe_b64encode(b"Z" + raw).decode(),
    }


def decodes_to_secret(line: str, pw: str) -> bool:
    """Does any reading of the printed value give the password (or its middle) back?"""
    value = line.split(": ", 1)[1]
    raw = pw.encode()
    middle = raw[2:-2]
    candidates = [value.encode()]
    for decode in (base64.b64decode, base64.urlsafe_b64decode, base64.b32decode, bytes.fromhex):
        for pad in ("", "=", "=="):
            with contextlib.suppress(ValueError):
                candidates.append(decode(value + pad))  # type: ignore[operator]
    candidates.append(html.unescape(value).encode())
    return any(middle in c for c in candidates)


@pytest.fixture
async def result(tmp_path: Path) -> ScriptResult:
    script = tmp_path / "leak.py"
    script.write_text(f"#!{sys.executable}\n{LEAK}")
    script.chmod(0o755)
    user = R("USER", "svc", fields=[F("login", value=["svc-rotation"]), F("password", value=[Secret(OLD)])])
    payload = build_payload(provider=R("PROV", "cfg"), resource=None, user=user, extra=[],
                            new_password=Secret(NEW), old_password=Secret(OLD), user_login="svc-rotation")
    return await run_script(ScriptAttachment(str(script)), payload, secrets=[Secret(NEW), Secret(OLD)],
                            run_as=None)


@pytest.mark.parametrize("name", sorted(encodings(NEW)))
async def test_each_encoding_of_the_new_password_is_redacted(result: ScriptResult, name: str) -> None:
    assert result.ok, result.error
    line = next(line for line in result.stdout.splitlines() if line.startswith(f"{name}: "))
    assert encodings(NEW)[name] not in result.stdout
    assert MASK in line
    assert not decodes_to_secret(line.replace(MASK, ""), NEW), line
