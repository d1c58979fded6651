"""Redaction of encoded secrets: base64 at any offset, the other encodings, and the trie pattern."""

from __future__ import annotations

import base64
import contextlib
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from keyturn.scripts.redact import MASK, MIN_DERIVED, Redactor, _trie_pattern, base64_cores, needles_for

secrets_ = st.text(min_size=4, max_size=40).filter(lambda s: s.strip() and "\x00" not in s)


@given(secret=secrets_, prefix=st.binary(max_size=7), suffix=st.binary(max_size=7))
@settings(max_examples=300, deadline=None)
def test_base64_of_a_secret_at_any_offset_loses_the_secret(secret: str, prefix: bytes, suffix: bytes) -> None:
    encoded = base64.b64encode(prefix + secret.encode() + suffix).decode()
    redacted = Redactor([secret])(encoded)
    core = base64_cores(secret.encode())[len(prefix) % 3]
    assert core not in redacted
    # what stays visible decodes to at most the bytes next to the secret, never its middle
    visible = redacted.split(MASK)
    middle = secret.encode()[2:-2]
    if len(middle) >= 2:
        for part in visible:
            for cut in range(4):
                chunk = part[cut:]
                chunk = chunk[: len(chunk) - len(chunk) % 4]
                with contextlib.suppress(ValueError):
                    assert middle not in base64.b64decode(chunk)


def test_http_basic_for_any_user() -> None:
    pw = "Rotated-Secret-42!"
    red = Redactor([pw])
    for user in ("", "a", "ab", "abc", "admin", "svc.rotation@example.com"):
        header = "Authorization: Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
        out = red(header)
        assert MASK in out
        assert all(core not in out for core in base64_cores(pw.encode()))


@given(secret=secrets_)
@settings(max_examples=200, deadline=None)
def test_every_encoding_is_masked(secret: str) -> None:
    red = Redactor([secret])
    raw = secret.encode()
    for form in (raw.hex(), raw.hex().upper(), base64.b32encode(raw).decode(),
                 base64.b32encode(raw).decode().rstrip("=").lower(), repr(secret), ascii(secret),
                 repr(raw), base64.urlsafe_b64encode(raw).decode()):
        assert form not in red(f"<{form}>") or len(form) < MIN_DERIVED


def test_short_derived_forms_are_not_used_but_the_value_is() -> None:
    assert "x" in needles_for("x")
    assert all(len(n) >= MIN_DERIVED for n in needles_for("x") - {"x"})
    assert Redactor(["x"])("a x b") == f"a {MASK} b"


def test_a_secret_containing_another_is_redacted_whole() -> None:
    red = Redactor(["abcd", "abcdefgh"])
    assert red("..abcdefgh..abcd..") == f"..{MASK}..{MASK}.."


words = st.lists(st.text(alphabet="abc\\(.*", min_size=1, max_size=6), min_size=1, max_size=12)


@given(needles=words, text=st.text(alphabet="abc\\(.*x", max_size=80))
@settings(max_examples=300, deadline=None)
def test_trie_pattern_matches_like_the_plain_alternation(needles: list[str], text: str) -> None:
    """Leftmost match, longest needle at that position: the same as the old alternation, faster."""
    ordered = sorted(set(needles), key=len, reverse=True)
    plain = re.compile("|".join(re.escape(n) for n in ordered))
    trie = re.compile(_trie_pattern(ordered))
    assert trie.sub("#", text) == plain.sub("#", text)


def test_clip_tail_still_masks_a_cut_secret() -> None:
    red = Redactor(["S3cret-Value-99"])
    assert red.clip_tail("output ... S3cret-Va") == f"output ... {MASK}"
