"""Redaction of script output: every secret that went into a script's stdin becomes `********`.

What is replaced, for each secret value `v` (new password, old password, every password-like field of
every record in `records`) — the forms a script prints when it logs a request, dumps a structure or
debugs an encoding (`ENCODINGS`, one function per form):

* `v` itself, as printed;
* JSON string content (`json.dumps(v)` without the quotes, both ``ensure_ascii`` settings), and JSON of
  that again (a JSON body logged inside another JSON document: ``\\"`` becomes ``\\\\\\"``);
* Python `repr`/`ascii` of the string and of its UTF-8 bytes (``print(repr(pw))``, ``print(body)``
  where `body` is bytes), without the quotes;
* percent-encoding (``quote(v, safe="")``) and form encoding (``quote_plus``);
* HTML escaping (`html.escape`, with and without quotes, and the ``&#39;``/``&#34;`` spellings other
  escapers use);
* hex of the UTF-8 bytes, lower and upper case;
* base32 (RFC 4648), padded and unpadded, upper and lower case;
* base64, standard and URL-safe alphabets, padded, unpadded **and at any byte offset**: for each of the
  three alignments the secret can have inside a longer base64 run, the characters that depend only on
  the secret's bytes are a fixed string, and that string is replaced. This covers HTTP Basic
  (``base64(user:pw)`` for any user), a secret at byte offset 1 or 2 of a blob, and unpadded output;
  at most the one or two characters that mix secret bits with their neighbours' stay visible.

plus two whole blobs: the stdin payload line and the `records` string inside it, so a script that
echoes its stdin (`cat`, `print(line)`) leaks nothing. A re-encoding a script invents beyond these
(encryption, compression, a custom alphabet) is out of reach — say so to operators.

Derived forms (everything but `v` itself) shorter than `MIN_DERIVED` characters are not used: they
would mask unrelated text everywhere while protecting almost nothing. The value itself is redacted
however short (a one-character secret garbles output; leaking it would be worse).

Speed: one compiled pattern over all needles, built as a prefix trie (``ab(?:c|d)``), so each output
position is tested against the few needles that share its first characters, not all of them; matches
are leftmost, and the longest needle at a position wins, so a secret that contains another is
redacted whole. When output was cut by the size bound, `clip_tail` masks a secret whose head made it
into the kept part.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

from keyturn.secret import Secret

MASK = "********"
BLOB_HEAD = 32
MIN_DERIVED = 4


def _json_forms(v: str) -> list[str]:
    once = [json.dumps(v, ensure_ascii=False)[1:-1], json.dumps(v, ensure_ascii=True)[1:-1]]
    return once + [json.dumps(j, ensure_ascii=ascii_)[1:-1] for j in once for ascii_ in (False, True)]


def _repr_forms(v: str) -> list[str]:
    return [repr(v)[1:-1], ascii(v)[1:-1], repr(v.encode())[2:-1]]


def _url_forms(v: str) -> list[str]:
    return [quote(v, safe=""), quote_plus(v, safe="")]


def _html_forms(v: str) -> list[str]:
    forms = [html.escape(v), html.escape(v, quote=False)]
    return [*forms, forms[0].replace("&#x27;", "&#39;").replace("&quot;", "&#34;")]


def _hex_forms(v: str) -> list[str]:
    raw = v.encode().hex()
    return [raw, raw.upper()]


def _base32_forms(v: str) -> list[str]:
    padded = base64.b32encode(v.encode()).decode()
    return [padded, padded.rstrip("="), padded.lower(), padded.rstrip("=").lower()]


def base64_cores(data: bytes) -> list[str]:
    """For each alignment (0, 1, 2 bytes before `data` in a base64 stream), the run of base64
    characters determined by `data` alone — what any base64 text containing `data` contains."""
    cores = []
    for lead in range(3):
        encoded = base64.b64encode(b"\0" * lead + data).decode()
        first = -(-8 * lead // 6)                  # first character wholly inside the secret's bits
        end = (8 * (lead + len(data))) // 6        # one past the last such character
        cores.append(encoded[first:end])
    return cores


def _base64_forms(v: str) -> list[str]:
    data = v.encode()
    standard = [base64.b64encode(data).decode(), *base64_cores(data)]
    return standard + [s.replace("+", "-").replace("/", "_") for s in standard]


ENCODINGS: tuple[Callable[[str], list[str]], ...] = (
    _json_forms, _repr_forms, _url_forms, _html_forms, _hex_forms, _base32_forms, _base64_forms,
)


def needles_for(value: str) -> set[str]:
    """Every text form of `value` that redaction replaces (see the module docstring)."""
    found = {value} if value else set()
    for encode in ENCODINGS:
        found.update(form for form in encode(value) if len(form) >= MIN_DERIVED)
    return found


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching exactly `words`, sharing prefixes (``ab(?:c(?:d)?|e)``); longest match first."""
    root: dict[str, dict] = {}  # type: ignore[type-arg]
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, dict]) -> str:  # type: ignore[type-arg]
        out = []
        # follow single-child chains without recursing (long needles are long chains)
        while len(node) == 1 and "" not in node:
            (ch, node), = node.items()
            out.append(re.escape(ch))
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if branches:
            group = "(?:" + "|".join(branches) + ")"
            out.append(group + "?" if "" in node else group)  # greedy: the longer needle first
        return "".join(out)

    return emit(root)


class Redactor:
    """Replaces every known secret form in text; build it once per script run."""

    def __init__(self, secrets: Iterable[Secret | str], *, blobs: Iterable[str] = ()) -> None:
        needles: set[str] = set()
        for item in secrets:
            value = item.reveal() if isinstance(item, Secret) else item
            if value:
                needles |= needles_for(value)
        needles.discard("")
        self._needles = sorted(needles, key=len, reverse=True)
        # Blobs can be megabytes (a payload with a large record): plain `str.replace`, not the regex.
        self._blobs = sorted({b.strip() for b in blobs if b.strip()}, key=len, reverse=True)
        self._pattern = _compile(self._needles) if self._needles else None

    def __call__(self, text: str) -> str:
        for blob in self._blobs:
            text = text.replace(blob, MASK)
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def clip_tail(self, text: str) -> str:
        """Mask a *partial* secret or blob at the very end of `text` (output cut mid-secret).

        Call it on already-redacted text whose source was truncated. Blob fragments shorter than
        `BLOB_HEAD` characters are left: they only hold the payload's fixed JSON opening.
        """
        cut = len(text)
        for needle in self._needles:
            for k in range(min(len(needle) - 1, len(text)), 0, -1):
                if text.endswith(needle[:k]):
                    cut = min(cut, len(text) - k)
                    break
        for blob in self._blobs:
            start = text.find(blob[:BLOB_HEAD], max(0, len(text) - len(blob)))
            while start >= 0:
                if blob.startswith(text[start:]):
                    cut = min(cut, start)
                    break
                start = text.find(blob[:BLOB_HEAD], start + 1)
        return text if cut == len(text) else text[:cut] + MASK


def _compile(needles: list[str]) -> re.Pattern[str]:
    try:
        return re.compile(_trie_pattern(needles))
    except (RecursionError, re.error, OverflowError):
        # a pathological needle set (very deep branching): the plain alternation is slower, not wrong
        return re.compile("|".join(re.escape(n) for n in needles))
