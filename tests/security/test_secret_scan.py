"""No credential is committed: every file git knows of (tracked, or new and not ignored) is scanned for
private keys, cloud and chat tokens, API keys and literal passwords, as part of `make test`.

The rules are deliberately specific (a leak looks like one of these); a hit is either a real secret —
remove it, rotate it — or test data, which goes into `ALLOWED` with the reason it is harmless. Fake
passwords are allowed wholesale only where they are the point: the tests and the simulators' lab data.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_BYTES = 2 * 1024 * 1024

RULES: dict[str, re.Pattern[str]] = {
    "private-key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "aws-access-key-id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "aws-secret-key": re.compile(r"(?i)aws_secret_access_key\W{1,4}[A-Za-z0-9/+]{40}\b"),
    "github-token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})\b"),
    "slack-token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "google-api-key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "stripe-key": re.compile(r"\b[sr]k_live_[0-9A-Za-z]{20,}"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    # Meraki Dashboard API keys are 40 hex digits; the same shape as a SHA-1, so only next to a key name
    "hex-api-key": re.compile(r"(?i)(?:api[_-]?key|\bkey|token|secret|bearer)\W{0,6}[0-9a-f]{40}\b"),
    "keyturn-master-key": re.compile(r"KEYTURN_MASTER_KEY\W{1,4}[A-Za-z0-9+/]{43}="),
    "password-literal": re.compile(
        r"""(?i)(?<![a-z0-9])(?:password|passwd|pwd|secret|api_?key|token)\w*\s*[:=]\s*["'](?![*<${])"""
        r"""[^"'\s]{8,}["']"""),
}

# Where fake passwords are the point (rule applies everywhere else).
TEST_DATA = {"password-literal": ("tests/", "src/keyturn/sim/", "bench/baselines/")}

# (path, rule) → why the hit is harmless
ALLOWED: dict[tuple[str, str], str] = {
    ("tests/unit/test_target_meraki.py", "hex-api-key"):
        "Meraki's published DevNet sandbox key (read-only, in Meraki's own documentation)",
    ("tests/integration/test_scripts_runner.py", "hex-api-key"):
        "Meraki's published DevNet sandbox key (read-only, in Meraki's own documentation)",
    ("tests/unit/test_discovery_meraki.py", "hex-api-key"):
        "Meraki's published DevNet sandbox key (read-only, in Meraki's own documentation)",
}


def repository_files() -> Iterator[Path]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to scan")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        path = REPO / name
        if path.is_file() and path.stat().st_size <= MAX_BYTES:
            yield path


def findings(path: Path, text: str) -> Iterator[tuple[str, int, str]]:
    rel = path.relative_to(REPO).as_posix()
    for rule, pattern in RULES.items():
        if rel.startswith(TEST_DATA.get(rule, ())) or (rel, rule) in ALLOWED:
            continue
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            shown = match.group(0)
            yield rule, line, shown[:12] + "…"  # never print the whole secret again


def scan() -> list[str]:
    hits = []
    for path in repository_files():
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        text = data.decode("utf-8", errors="replace")
        rel = path.relative_to(REPO)
        hits += [f"{rel}:{line}: {rule} ({shown})" for rule, line, shown in findings(path, text)]
    return hits


def test_no_secret_is_committed() -> None:
    hits = scan()
    assert not hits, "possible secrets (remove and rotate, or allow-list test data with a reason):\n" + \
        "\n".join(hits)


def test_allow_list_entries_are_still_needed() -> None:
    """An allow-list entry whose file no longer has the hit is removed, so it cannot hide a new one."""
    stale = []
    for (rel, rule), _why in ALLOWED.items():
        path = REPO / rel
        if not path.is_file() or not RULES[rule].search(path.read_text(errors="replace")):
            stale.append(f"{rel} ({rule})")
    assert not stale, f"stale allow-list entries: {stale}"


@pytest.mark.parametrize(("rule", "sample"), [
    ("private-key", "-----BEGIN " + "RSA PRIVATE KEY-----"),
    ("private-key", "-----BEGIN " + "OPENSSH PRIVATE KEY-----"),
    ("aws-access-key-id", "AKIA" + "Q" * 16),
    ("github-token", "ghp_" + "a1" * 18),
    ("slack-token", "xoxb-" + "1234567890-abc"),
    ("google-api-key", "AIza" + "x" * 35),
    ("jwt", "eyJ" + "a" * 12 + ".eyJ" + "b" * 12 + "." + "c" * 12),
    ("hex-api-key", 'MERAKI_API_KEY = "' + "0a" * 20 + '"'),
    ("keyturn-master-key", "KEYTURN_MASTER_KEY=" + "A" * 43 + "="),
    ("password-literal", 'password = "' + "Winter2025!" + '"'),
    ("password-literal", "db_password: '" + "hunter2hunter2" + "'"),
])
def test_each_rule_catches_its_kind(rule: str, sample: str) -> None:
    fake = REPO / "src" / "keyturn" / "example.py"  # a path outside the test-data scopes, never written
    assert rule in {r for r, _, _ in findings(fake, f"x = 1\n{sample}\n")}


@pytest.mark.parametrize("harmless", [
    'password = "********"', "password = '<from the vault>'", 'token = "${TOKEN}"',
    "sha = 'da39a3ee5e6b4b0d3255bfef95601890afd80709'", "password: str | None = None",
])
def test_placeholders_are_not_findings(harmless: str) -> None:
    assert list(findings(REPO / "src" / "keyturn" / "example.py", harmless)) == []
