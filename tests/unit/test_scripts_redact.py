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
    assert red.longest >= len("xxabcxx")


def test_empty_secrets_are_ignored() -> None:
    red = Redactor([Secret(""), ""])
    assert red("nothing to hide") == "nothing to hide"
    assert red.longest == 0
