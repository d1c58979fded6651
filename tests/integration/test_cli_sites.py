"""`--site` on `keyturn record add|edit`, `keyturn rotation set` and `keyturn record import`, with Typer's
CliRunner against a real vault in tmp_path (exact output), sites configured by env or keyturn.toml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keyturn.cli.main import app

UNKNOWN = ("error: unknown site 'dc-north'; known sites: default, dc-east, dc-west; to add one, list it in "
           "KEYTURN_SITES (comma-separated) or in `sites = [...]` under [keyturn] in keyturn.toml\n")


class Cli:
    def __init__(self, home: Path) -> None:
        self.runner = CliRunner()
        self.home = home
        self.env: dict[str, str | None] = {
            "KEYTURN_HOME": str(home), "KEYTURN_MASTER_KEY": None, "KEYTURN_PASSPHRASE": None,
            "KEYTURN_DATABASE_URL": None, "KEYTURN_KEY_FILE": None, "KEYTURN_CONFIG": None,
            "KEYTURN_SITES": "dc-east,dc-west"}

    def __call__(self, *args: str, code: int = 0, input: str | None = None) -> Any:
        result = self.runner.invoke(app, list(args), env=self.env, input=input)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    def show(self, ref: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self("record", "show", ref, "--json").stdout)
        return data


@pytest.fixture
def run(tmp_path: Path) -> Cli:
    cli = Cli(tmp_path / "home")
    cli("init")
    return cli


def test_add_show_edit_clear(run: Cli) -> None:
    uid = run("record", "add", "--type", "pamNetworkDevice", "--title", "sw1", "--field", "host=10.0.0.1",
              "--site", "dc-east").stdout.strip()
    assert run.show(uid)["meta"] == {"site": "dc-east"}
    assert run("record", "show", "sw1").stdout.splitlines() == [
        f"uid:       {uid}", "title:     sw1", "type:      pamNetworkDevice", "host:      10.0.0.1",
        'meta site: "dc-east"']
    assert run("record", "edit", "sw1", "--site", "dc-west").stdout == f"updated {uid}\n"
    assert run.show(uid)["meta"] == {"site": "dc-west"}
    run("record", "edit", "sw1", "--site", "")
    assert run.show(uid)["meta"] == {"site": None}
    assert "meta site" not in run("record", "show", "sw1").stdout
    run("record", "edit", "sw1", "--site", "dc-east", "--title", "sw1b")
    assert (run.show(uid)["title"], run.show(uid)["meta"]) == ("sw1b", {"site": "dc-east"})
    run("record", "edit", "sw1b", "--site", "default")
    assert run.show(uid)["meta"] == {"site": None}
    # `default` on add stores nothing: a record without a site is at the default site.
    other = run("record", "add", "--type", "pamNetworkDevice", "--title", "sw2", "--site", "default")
    assert run.show(other.stdout.strip())["meta"] == {}
    audit = json.loads(run("audit", "list", "--record", uid, "--json").stdout)
    assert [e["action"] for e in audit] == ["record.meta", "record.meta", "record.update", "record.meta",
                                           "record.meta", "record.add"]


def test_unknown_or_malformed_site_is_refused_with_the_list(run: Cli) -> None:
    r = run("record", "add", "--type", "pamNetworkDevice", "--title", "sw1", "--site", "dc-north", code=2)
    assert r.stderr == UNKNOWN
    assert json.loads(run("record", "list", "--json").stdout)[0]["title"] == "Default PAM Configuration"
    assert len(json.loads(run("record", "list", "--json").stdout)) == 1       # nothing was added
    run("record", "add", "--type", "pamNetworkDevice", "--title", "sw1", "--site", "dc-east")
    assert run("record", "edit", "sw1", "--site", "dc-north", code=2).stderr == UNKNOWN
    r = run("record", "edit", "sw1", "--site", "DC East", code=2)
    assert r.stderr == ("error: site name 'DC East' is not valid: a lowercase letter or digit, then up to "
                        "62 of a-z 0-9 _ . - (it becomes a queue name)\n")
    assert run.show("sw1")["meta"] == {"site": "dc-east"}


def test_env_and_toml_configuration(run: Cli) -> None:
    run.env["KEYTURN_SITES"] = None
    r = run("record", "add", "--type", "pamNetworkDevice", "--title", "sw1", "--site", "dc-east", code=2)
    assert r.stderr.startswith("error: unknown site 'dc-east'; known sites: default; to add one")
    (run.home / "keyturn.toml").write_text('[keyturn]\nsites = ["dc-east", "lab.1"]\n')
    run("record", "add", "--type", "pamNetworkDevice", "--title", "sw1", "--site", "lab.1")
    r = run("record", "edit", "sw1", "--site", "dc-west", code=2)
    assert r.stderr.startswith("error: unknown site 'dc-west'; known sites: default, dc-east, lab.1;")
    run.env["KEYTURN_SITES"] = "dc-west"                     # the environment wins over the file
    run("record", "edit", "sw1", "--site", "dc-west")
    r = run("record", "edit", "sw1", "--site", "lab.1", code=2)
    assert r.stderr.startswith("error: unknown site 'lab.1'; known sites: default, dc-west;")
    run.env["KEYTURN_SITES"] = "dc-west,Bad"
    r = run("record", "list", code=2)
    assert r.stderr.startswith("error: invalid setting sites: Value error, site name 'Bad' is not valid")


def _profiled(run: Cli) -> None:
    run("record", "add", "--type", "pamNetworkDevice", "--title", "sw1", "--field", "host=10.0.0.1",
        "--site", "dc-east")
    run("record", "add", "--type", "pamUser", "--title", "u1", "--login", "netops")
    run("script", "attach", "u1", "/bin/true")       # a noop profile needs a script that does the change


def _site(run: Cli) -> tuple[str, str]:
    data = json.loads(run("rotation", "show", "u1", "--json").stdout)
    return data["site"], data["site_from"]


def test_profile_override_wins_over_the_resource_site(run: Cli) -> None:
    _profiled(run)
    run("rotation", "set", "u1", "--target", "noop", "--resource", "sw1")
    assert _site(run) == ("dc-east", "resource")
    run("rotation", "set", "u1", "--target", "noop", "--resource", "sw1", "--site", "dc-west")
    assert _site(run) == ("dc-west", "profile")
    rows = run("rotation", "show", "u1").stdout.splitlines()
    assert [r.split(None, 1)[1] for r in rows if r.startswith(("options", "site"))] == [
        "site=dc-west", "dc-west (from the profile)"]
    run("rotation", "set", "u1", "--target", "noop", "--resource", "sw1", "--site", "default")
    assert _site(run) == ("default", "profile")              # pinned to default whatever the resource says
    run("rotation", "set", "u1", "--target", "noop", "--resource", "sw1", "--site", "")
    assert _site(run) == ("dc-east", "resource")
    run("record", "edit", "sw1", "--site", "")
    assert _site(run) == ("default", "default")


def test_profile_unknown_site_is_refused(run: Cli) -> None:
    _profiled(run)
    run("rotation", "set", "u1", "--target", "noop", "--resource", "sw1", "--site", "dc-west")
    r = run("rotation", "set", "u1", "--target", "noop", "--resource", "sw1", "--site", "dc-north", code=2)
    assert r.stderr == UNKNOWN
    r = run("rotation", "set", "u1", "--target", "noop", "--resource", "sw1", "--option", "site=dc-north",
            code=2)
    assert r.stderr == UNKNOWN
    r = run("rotation", "set", "u1", "--target", "noop", "--site", "dc-east", "--option", "site=dc-west",
            code=2)
    assert r.stderr == "error: --site and --option site= disagree; give one of them\n"
    assert _site(run) == ("dc-west", "profile")               # the stored profile is unchanged


def test_import_checks_sites_against_the_configuration(run: Cli, tmp_path: Path) -> None:
    doc = {"records": [{"title": "sw9", "type": "pamNetworkDevice", "meta": {"site": "dc-north"}}]}
    src = tmp_path / "in.json"
    src.write_text(json.dumps(doc))
    r = run("record", "import", str(src), code=1)
    assert r.stderr == f"error: {src}: record #1 ('sw9'): {UNKNOWN.removeprefix('error: ')}"
    doc["records"][0]["meta"] = {"site": "dc-west"}
    src.write_text(json.dumps(doc))
    assert run("record", "import", str(src)).stdout == "imported 1 records\n"
    assert run.show("sw9")["meta"] == {"site": "dc-west"}
