"""Script attachments: validation and the meta round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from keyturn.errors import ConfigError
from keyturn.scripts.attachments import (
    ScriptAttachment,
    attachments_of,
    parse_env_assignments,
    to_meta,
)


@dataclass(frozen=True)
class R:
    uid: str
    meta: dict[str, Any] = field(default_factory=dict)


def test_round_trip_through_meta() -> None:
    atts = [
        ScriptAttachment("/s/a.py", prefix="/usr/bin/python3 -u", with_records=("X",), timeout=5,
                         env={"A": "1"}, fail_on=("Failed to update",)),
        ScriptAttachment("/s/b.sh"),
    ]
    rec = R("U", {"scripts": to_meta(atts)})
    back = attachments_of(rec)
    assert back == atts
    assert back[0].name == "a.py"
    assert back[1].timeout == 120.0 and back[1].env == {} and back[1].prefix is None


def test_no_meta_means_no_attachments() -> None:
    assert attachments_of(R("U")) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"script": ""}, "script path is empty"),
        ({"script": "/a", "prefix": "'unbalanced"}, "cannot be parsed"),
        ({"script": "/a", "prefix": "  "}, "prefix is empty"),
        ({"script": "/a", "timeout": 0}, "timeout must be"),
        ({"script": "/a", "env": {"BAD-NAME": "x"}}, "not valid"),
        ({"script": "/a", "fail_on": ("(",)}, "not a valid regex"),
    ],
)
def test_invalid_attachment_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ScriptAttachment(**kwargs)


def test_corrupt_meta_names_record_and_entry() -> None:
    rec = R("U9", {"scripts": [{"script": "/a"}, {"script": 3}]})
    with pytest.raises(ConfigError, match=r"record U9 meta.scripts\[1\]: 'script' must be a string"):
        attachments_of(rec)
    with pytest.raises(ConfigError, match="unknown keys"):
        attachments_of(R("U", {"scripts": [{"script": "/a", "shell": "bash"}]}))
    with pytest.raises(ConfigError, match="must be a list"):
        attachments_of(R("U", {"scripts": {"script": "/a"}}))


def test_attachment_is_immutable() -> None:
    env = {"A": "1"}
    att = ScriptAttachment("/a", env=env)
    env["A"] = "2"
    assert att.env["A"] == "1"
    with pytest.raises(TypeError):
        att.env["A"] = "3"  # type: ignore[index]


def test_parse_env_assignments() -> None:
    assert parse_env_assignments(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(ConfigError, match="item 2") as info:
        parse_env_assignments(["A=1", "hunter2"])
    assert "hunter2" not in str(info.value)
