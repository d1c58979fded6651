"""Redaction of script output: every secret that went into a script's stdin becomes `********`.

What is replaced, for each secret value `v` (new password, old password, every password-like field of
every record in `records`):

* `v` itself, as printed;
* `v` as it appears inside a JSON string (`json.dumps(v)` without the quotes), for scripts that dump
  the parsed payload or a request body;
* `v` percent-encoded (`urllib.parse.quote(v, safe="")`), for scripts that log a URL or form body;
* standard base64 of `v`, for scripts that print `base64(value)` (e.g. HTTP Basic of the value alone);

plus two whole blobs: the stdin payload line and the `records` string inside it, so a script that
echoes its stdin (`cat`, `print(line)`) leaks nothing. A secret embedded *inside* a longer base64 blob
at an arbitrary offset cannot be found by substring search; the blob rule covers the blobs keyturn
itself produced, and any other re-encoding a script invents is out of reach — say so to operators.

Needles are replaced longest first, so a secret that contains another is redacted whole. Short
secrets are redacted too (a one-character secret garbles output; leaking it would be worse). When
output was cut by the size bound, `clip_tail` masks a secret whose head made it into the kept part.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import quote

from keyturn.secret import Secret

MASK = "********"
BLOB_HEAD = 32


class Redactor:
    """Replaces every known secret form in text; build it once per script run."""

    def __init__(self, secrets: Iterable[Secret | str], *, blobs: Iterable[str] = ()) -> None:
        needles: set[str] = set()
        for item in secrets:
            value = item.reveal() if isinstance(item, Secret) else item
            if not value:
                continue
            needles.add(value)
            needles.add(json.dumps(value, ensure_ascii=False)[1:-1])
            needles.add(json.dumps(value, ensure_ascii=True)[1:-1])
            needles.add(quote(value, safe=""))
            needles.add(base64.b64encode(value.encode()).decode())
        needles.discard("")
        self._needles = sorted(needles, key=len, reverse=True)
        # Blobs can be megabytes (a payload with a large record): plain `str.replace`, not the regex.
        self._blobs = sorted({b.strip() for b in blobs if b.strip()}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(n) for n in self._needles)) if self._needles else None

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
