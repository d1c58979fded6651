"""The benchmark's Ansible inventory writer (bench/bench_ssh.py `unsafe_inventory`), issue 20.

Ansible templates every inventory string, so a lab password holding `{{`, `{%` or `{#` failed its host
with a Jinja syntax error (15 of 1,000 devices at seed 2026). The writer emits every string as an
`!unsafe` single-quoted scalar; these tests load its output back with PyYAML (installed with netmiko
and yangson of the test extra) and a loader that knows the `!unsafe` tag, as Ansible's does, and expect
every value back exactly, tagged. No Ansible install needed.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from bench.bench_ssh import unsafe_inventory
from hypothesis import given
from hypothesis import strategies as st

from keyturn.sim.lab import PASSWORD_ALPHABET, make_plan


class Unsafe(str):
    """What the test loader builds for `!unsafe` (Ansible builds its own never-templated string)."""


class _Loader(yaml.SafeLoader):
    pass


def _unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Unsafe:
    assert isinstance(node, yaml.ScalarNode)
    return Unsafe(loader.construct_scalar(node))


_Loader.add_constructor("!unsafe", _unsafe)


def load(text: str) -> dict[str, Any]:
    data = yaml.load(text, Loader=_Loader)
    assert isinstance(data, dict)
    return data


def round_trip(password: str) -> object:
    text = unsafe_inventory({"sw0001": {"ansible_password": password}})
    return load(text)["devices"]["hosts"]["sw0001"]["ansible_password"]


TRICKY = [
    "{{", "{%", "{#", "a{{b}}c", "x{% if %}", "{#no end", "{{ lookup('pipe', 'id') }}",
    "!unsafe", "!unsafe 'x'", "!!str", "'", "''", "a'b", '"', 'a"b', "\\", "\\'", "a\\nb", "\\\\",
    " leading", "trailing ", "  ", "", "#comment", "a #b", ": x", "a: b", "- x", "? x", "&anchor", "*alias",
    "%TAG", "@x", "`x", "|", ">", "[a, b]", "{a: b}", "null", "~", "yes", "0x1F", "1e3", "012",
    "fake}}", "{{{{", "{%-", "{#-",
]


@pytest.mark.parametrize("password", TRICKY)
def test_tricky_passwords_load_back_exactly_and_unsafe(password: str) -> None:
    got = round_trip(password)
    assert type(got) is Unsafe
    assert got == password


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_any_printable_ascii_loads_back(password: str) -> None:
    got = round_trip(password)
    assert type(got) is Unsafe
    assert got == password


@given(st.text(alphabet=st.sampled_from(PASSWORD_ALPHABET), min_size=16, max_size=24))
def test_any_lab_password_loads_back(password: str) -> None:
    assert round_trip(password) == password


@given(st.text().filter(str.isprintable))
def test_any_printable_unicode_loads_back(password: str) -> None:
    assert round_trip(password) == password


def test_seed_2026_lab_inventory_loads_back_exactly() -> None:
    # The lab of the runs that lost 15 of 1,000 devices: every host's values, the Jinja-bearing ones too.
    state = make_plan(iosxe=1000, users_per_device=1, meraki_orgs=0, seed=2026)
    hosts: dict[str, dict[str, object]] = {
        d.name: {"ansible_host": d.host, "ansible_port": 2200 + i, "ansible_user": d.admin.username,
                 "ansible_password": d.admin.password, "ansible_become_password": d.enable_secret,
                 "rotate_user": d.users[0].username, "new_password": d.users[0].password}
        for i, d in enumerate(state.iosxe)
    }
    jinja = [v for h in hosts.values() for v in h.values() if isinstance(v, str) and
             any(o in v for o in ("{{", "{%", "{#"))]
    assert len(jinja) >= 15
    loaded = load(unsafe_inventory(hosts))["devices"]["hosts"]
    assert loaded == hosts
    for name, hostvars in loaded.items():
        assert type(hostvars["ansible_port"]) is int
        assert all(type(v) is Unsafe for k, v in hostvars.items() if k != "ansible_port"), name


def test_names_are_strings_and_ports_integers() -> None:
    loaded = load(unsafe_inventory({"null": {"yes": 22, "on": "x"}}))["devices"]["hosts"]
    assert loaded == {"null": {"yes": 22, "on": "x"}}
    assert type(loaded["null"]["yes"]) is int


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "tab\there", "nul\x00", "\x0b", "\x85", "\u2028", "\ufeff"])
def test_a_non_printable_string_is_refused_without_echoing_it(bad: str) -> None:
    secret = f"s3cr3t{bad}"
    with pytest.raises(ValueError) as info:
        unsafe_inventory({"sw0001": {"ansible_password": secret}})
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize("value", [True, None, 1.5, b"bytes"])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        unsafe_inventory({"sw0001": {"x": value}})
