"""The Ansible lookup plugin, end to end: keyturn rotates `netops1 @ sw0001` on the SSH simulator, then
`ansible-playbook` (ansible-core from the test extra, a real subprocess) reads the new password with
`lookup('keyturn', ...)` from `keyturn serve` over HTTPS and logs in to the switch with it.

The collection is installed with `ansible-galaxy collection install` into a temporary
ANSIBLE_COLLECTIONS_PATH (ANSIBLE_HOME temporary too): nothing is installed globally.

Why not `ansible.netcommon.network_cli` + `cisco.ios.ios_command`: those collections are not part of
ansible-core and not on PyPI, and the tests run offline. The host carries the cisco.ios connection
variables a real inventory would (`ansible_network_os: cisco.ios.ios`, `ansible_host`, `ansible_port`,
`ansible_user`, `ansible_password` from the lookup); only `ansible_connection` is `local`, and the
login is made by a task that hands those same variables to netmiko (the SSH library network_cli's
paramiko transport is close to), with the password in the task's environment, never in argv. With
cisco.ios installed, set `ansible_connection: ansible.netcommon.network_cli` and call
`cisco.ios.ios_command`: the variables stay as they are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from netmiko import ConnectHandler
from netmiko.exceptions import NetmikoAuthenticationException

from tests.integration.automation_lab import ACCOUNT, USER, Lab, automation_lab

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = ROOT / "integrations" / "ansible" / "keyturn"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.timeout(400)

LOGIN_SCRIPT = '''\
import os, sys
from netmiko import ConnectHandler
host, port, user = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with ConnectHandler(device_type="cisco_ios", host=host, port=port, username=user,
                    password=os.environ["IOS_PASSWORD"], fast_cli=False, timeout=20) as conn:
    print(conn.find_prompt())
    print(conn.send_command("show privilege"))
'''

INVENTORY = '''\
switches:
  hosts:
    sw0001:
      ansible_host: 127.0.0.1
      ansible_port: {port}
      ansible_network_os: cisco.ios.ios
      ansible_user: {user}
      ansible_password: "{{{{ lookup('{plugin}', '{record}', field='password') }}}}"
      ansible_connection: local
      ansible_python_interpreter: {python}
'''

# A/B-safe: login and password read once, as one pair, into a fact the connection variables point at
INVENTORY_PAIR = '''\
switches:
  hosts:
    sw0001:
      ansible_host: 127.0.0.1
      ansible_port: {port}
      ansible_network_os: cisco.ios.ios
      keyturn_record: {record}
      ansible_user: "{{{{ keyturn_cred.login }}}}"
      ansible_password: "{{{{ keyturn_cred.password }}}}"
      ansible_connection: local
      ansible_python_interpreter: {python}
'''

PAIR_TASK = '''\
    - name: read the account once (login and password as one pair)
      ansible.builtin.set_fact:
        keyturn_cred: "{{ lookup('keyturn.credentials.keyturn', keyturn_record, pair=true) }}"
      delegate_to: localhost      # the host's connection variables need the fact this task sets
      no_log: true
'''

PLAYBOOK = '''\
- name: log in to the switches with the credential keyturn holds
  hosts: switches
  gather_facts: false
  tasks:
    - name: SSH login with the cisco.ios connection variables
      ansible.builtin.command:
        argv: ["{{ ansible_playbook_python }}", "{{ playbook_dir }}/ios_login.py",
               "{{ ansible_host }}", "{{ ansible_port }}", "{{ ansible_user }}"]
      environment:
        IOS_PASSWORD: "{{ ansible_password }}"
      register: login
      changed_when: false
    - name: the switch answered as the logged-in user
      ansible.builtin.assert:
        that: ["'sw0001' in login.stdout", "'Current privilege level' in login.stdout"]
    - name: show it
      ansible.builtin.debug:
        var: login.stdout_lines
'''


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with automation_lab(tmp_path_factory.mktemp("ansible-lab")) as lab:
        yield lab


def _ansible_env(lab: Lab, home: Path) -> dict[str, str]:
    env = dict(lab.env)
    env.update(ANSIBLE_HOME=str(home / "ansible-home"), ANSIBLE_COLLECTIONS_PATH=str(home / "collections"),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_LOCAL_TEMP=str(home / "ansible-tmp"), ANSIBLE_REMOTE_TEMP=str(home / "ansible-tmp"))
    return env


def _project(lab: Lab, home: Path, record: str = ACCOUNT,
             plugin: str = "keyturn.credentials.keyturn", pair: bool = False) -> None:
    (home / "ios_login.py").write_text(LOGIN_SCRIPT)
    inventory = INVENTORY_PAIR if pair else INVENTORY
    (home / "inventory.yml").write_text(inventory.format(port=lab.ssh_port, user=USER, record=record,
                                                         plugin=plugin, python=sys.executable))
    tasks = "  tasks:\n"
    (home / "site.yml").write_text(PLAYBOOK.replace(tasks, tasks + PAIR_TASK) if pair else PLAYBOOK)


def _install(env: dict[str, str], home: Path) -> None:
    proc = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", str(COLLECTION), "-p",
                           str(home / "collections")], env=env, cwd=home, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert (home / "collections" / "ansible_collections" / "keyturn" / "credentials" / "plugins" / "lookup"
            / "keyturn.py").is_file()
    doc = subprocess.run([str(BIN / "ansible-doc"), "--json", "-t", "lookup", "keyturn.credentials.keyturn"],
                         env=env, cwd=home, capture_output=True, text=True, timeout=120, check=False)
    assert doc.returncode == 0, doc.stderr              # DOCUMENTATION / EXAMPLES / RETURN parse
    documented = json.loads(doc.stdout)["keyturn.credentials.keyturn"]
    assert set(documented["doc"]["options"]) >= {"_terms", "field", "pair", "url", "token", "ca_bundle"}
    assert documented["examples"] and documented["return"]["_raw"]


def _playbook(env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "inventory.yml", "site.yml"], env=env,
                          cwd=home, capture_output=True, text=True, timeout=180, check=False)


def _login(lab: Lab, password: str) -> str:
    with ConnectHandler(device_type="cisco_ios", host="127.0.0.1", port=lab.ssh_port, username=USER,
                        password=password, fast_cli=False, timeout=20) as conn:
        return conn.find_prompt()


def test_playbook_logs_in_with_the_password_keyturn_just_rotated(lab: Lab, tmp_path: Path) -> None:
    lab.rotate()
    current = lab.current()
    assert current != lab.initial
    with pytest.raises(NetmikoAuthenticationException):   # the device no longer takes the old one
        _login(lab, lab.initial)

    env = _ansible_env(lab, tmp_path)
    _install(env, tmp_path)
    _project(lab, tmp_path)
    run = _playbook(env, tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "Current privilege level" in run.stdout and "sw0001" in run.stdout
    assert "ok=3" in run.stdout and "failed=0" in run.stdout
    assert current not in run.stdout + run.stderr and lab.token not in run.stdout + run.stderr

    # rotate again: the same playbook, unchanged, follows; and the pair form (login from keyturn too)
    lab.rotate()
    newer = lab.current()
    assert newer != current
    again = _playbook(env, tmp_path)
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-3000:]
    assert "ok=3" in again.stdout and "failed=0" in again.stdout
    _project(lab, tmp_path, pair=True)
    paired = _playbook(env, tmp_path)
    assert paired.returncode == 0, paired.stdout[-6000:] + paired.stderr[-3000:]
    assert "ok=4" in paired.stdout and "failed=0" in paired.stdout
    assert "Current privilege level" in paired.stdout
    assert newer not in again.stdout + again.stderr + paired.stdout + paired.stderr
    # the reads were audited under the token's name
    audit = lab.keyturn("audit", "list", "--action", "reveal", "--json")
    assert "automation" in audit


def test_refusals_fail_the_play_with_no_secret(lab: Lab, tmp_path: Path) -> None:
    env = _ansible_env(lab, tmp_path)
    _install(env, tmp_path)
    # the short name, from a `lookup_plugins/` directory beside the playbook
    (tmp_path / "lookup_plugins").mkdir()
    (tmp_path / "lookup_plugins" / "keyturn.py").symlink_to(COLLECTION / "plugins" / "lookup" / "keyturn.py")
    _project(lab, tmp_path, record="no such switch", plugin="keyturn")
    missing = _playbook(env, tmp_path)
    assert missing.returncode != 0
    assert "keyturn lookup 'no such switch': HTTP 40" in missing.stdout + missing.stderr
    outputs = [missing.stdout + missing.stderr]
    if lab.token_role == "consumer":
        # outside the grants: the same 403 for a record that exists as for one that does not
        assert "HTTP 403" in outputs[0]
        _project(lab, tmp_path, record="sw0001 admin", plugin="keyturn")
        other = _playbook(env, tmp_path)
        assert other.returncode != 0 and "keyturn lookup 'sw0001 admin': HTTP 403" in other.stdout
        outputs.append(other.stdout + other.stderr)
        assert lab.keyturn("reveal", "sw0001 admin").strip() not in outputs[1]

    _project(lab, tmp_path, plugin="keyturn")
    bad_token = _playbook({**env, "KEYTURN_TOKEN": "kt_not-a-token"}, tmp_path)
    assert bad_token.returncode != 0
    assert "HTTP 401" in bad_token.stdout + bad_token.stderr
    output = "".join(outputs) + bad_token.stdout + bad_token.stderr
    assert lab.current() not in output and lab.token not in output
    assert os.environ.get("KEYTURN_TOKEN", "\0") not in output
