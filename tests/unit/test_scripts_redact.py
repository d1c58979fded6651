"""Redaction of script output."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

from keyturn.scripts.redact import MASK, Redactor
from keyturn.secret import Secret


def test_every_form_of_a_secret_is_masked() -> None:
    value = 'p@ss "w/rd" é'
    red = Redactor([Secret(value)])
    forms = [value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             quote(value, safe=""), base64.b64encode(value.encode()).decode()]
    for form in forms:
        assert red(f"before {form} after") == f"before {MASK} after"


def test_longest_first_and_blobs() -> None:
    red = Redactor([Secret("abc"), Secret("xxabcxx")], blobs=["BLOB=="])
    assert red("xxabcxx abc BLOB==") == f"{MASK} {MASK} {MASK}"


def test_clip_tail_masks_a_partial_secret_or_blob() -> None:
    blob = "B" * 40 + "secretish" + "C" * 40
    red = Redactor([Secret("hunter2")], blobs=[blob])
    assert red.clip_tail("log line hunt") == f"log line {MASK}"
    assert red.clip_tail("log line ok") == "log line ok"
    assert red.clip_tail("echo " + blob[:60]) == f"echo {MASK}"
    assert red.clip_tail("echo " + "B" * 10) == "echo " + "B" * 10  # fixed JSON head only


def test_empty_secrets_are_ignored() -> None:
    red = Redactor([Secret(""), ""])
    assert red("nothing to hide") == "nothing to hide"
    assert red.clip_tail("nothing") == "nothing"
