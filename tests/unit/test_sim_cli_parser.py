"""The IOS XE command trie: abbreviations, ambiguity, caret positions, pipes and filters."""

from __future__ import annotations

import pytest

from keyturn.sim.iosxe_cli import COMMAND_TRIES, Parsed, ParseError, apply_filter, parse

PRIV, USER, CONFIG = COMMAND_TRIES["priv"], COMMAND_TRIES["user"], COMMAND_TRIES["config"]


@pytest.mark.parametrize(
    ("line", "action"),
    [
        ("conf t", "configure"),
        ("configure terminal", "configure"),
        ("CONF T", "configure"),
        ("sh run", "show_run"),
        ("wr", "write_memory"),
        ("wr mem", "write_memory"),
        ("write memory", "write_memory"),
        ("copy run start", "copy_run_start"),
        ("term len 0", "terminal_length"),
        ("sh priv", "show_privilege"),
        ("en", "enable"),
    ],
)
def test_unique_prefixes_resolve(line: str, action: str) -> None:
    result = parse(PRIV, line)
    assert isinstance(result, Parsed)
    assert result.action == action


@pytest.mark.parametrize(("line", "position"), [("c", 0), ("t", 0), ("show in", 5), ("e", 0)])
def test_ambiguous_prefixes(line: str, position: int) -> None:
    assert parse(PRIV, line) == ParseError("ambiguous", position)


@pytest.mark.parametrize(
    ("trie", "line", "position"),
    [
        (PRIV, "show foo", 5),
        (PRIV, "  show   foo", 9),
        (PRIV, "terminal length 999", 16),
        (USER, "show running-config", 5),
        (USER, "configure terminal", 0),
        (CONFIG, "username bob privilege 16 secret x", 23),
        (CONFIG, "username bob frobnicate x", 13),
    ],
)
def test_invalid_input_points_at_the_token(trie: object, line: str, position: int) -> None:
    assert parse(trie, line) == ParseError("invalid", position)  # type: ignore[arg-type]


@pytest.mark.parametrize("line", ["show", "terminal length", "username bob", "username bob secret 0",
                                  "username bob privilege 15", "show running-config | include"])
def test_incomplete(line: str) -> None:
    trie = CONFIG if line.startswith("username") else PRIV
    assert parse(trie, line) == ParseError("incomplete")


def test_empty_line_is_nothing() -> None:
    assert parse(PRIV, "   ") is None


@pytest.mark.parametrize(
    ("line", "args"),
    [
        ("username bob privilege 15 algorithm-type scrypt secret N3w Pa55 ",
         {"name": "bob", "privilege": "15", "algorithm": "scrypt", "kind": "secret", "value": "N3w Pa55 "}),
        ("username bob secret 0 7 abc", {"name": "bob", "kind": "secret", "type": "0", "value": "7 abc"}),
        ("username bob secret 7 abc", {"name": "bob", "kind": "secret", "value": "7 abc"}),
        ("username bob secret 9x", {"name": "bob", "kind": "secret", "value": "9x"}),
        ("username bob view RO privilege 3 password 7 0822455D0A16",
         {"name": "bob", "view": "RO", "privilege": "3", "kind": "password", "type": "7",
          "value": "0822455D0A16"}),
        ("user bob pass with | pipe", {"name": "bob", "kind": "password", "value": "with | pipe"}),
    ],
)
def test_username_forms_capture_the_rest_of_the_line(line: str, args: dict[str, str]) -> None:
    result = parse(CONFIG, line)
    assert isinstance(result, Parsed)
    assert (result.action, result.args) == ("username", args)


def test_pipe_filters() -> None:
    result = parse(PRIV, "sh run | i ^username bob ")
    assert isinstance(result, Parsed)
    assert result.pipe == ("include", "^username bob ")
    result = parse(PRIV, "show running-config | sec user")
    assert isinstance(result, Parsed) and result.pipe == ("section", "user")
    assert parse(PRIV, "show run | x y") == ParseError("invalid", 11)


def test_apply_filter_section_keeps_children() -> None:
    lines = ["hostname r1", "line vty 0 4", " login local", " transport input ssh", "username a"]
    assert apply_filter(lines, "section", "^line") == ["line vty 0 4", " login local", " transport input ssh"]
    assert apply_filter(lines, "include", "^user") == ["username a"]
    assert apply_filter(lines, "exclude", "^ ") == ["hostname r1", "line vty 0 4", "username a"]
    assert apply_filter(lines, "begin", "vty") == lines[1:]
    assert apply_filter(lines, "count", "o") == ["Number of lines which match regexp = 3"]
