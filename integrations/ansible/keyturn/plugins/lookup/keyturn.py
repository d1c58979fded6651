# keyturn lookup plugin: the current value of a secret field of a keyturn record, over keyturn's REST
# API (POST /records/{ref}/reveal). Standard library only: the controller needs no keyturn install.
# ruff: noqa: E402  (Ansible's layout: the DOCUMENTATION blocks come before the imports)
from __future__ import annotations

DOCUMENTATION = r"""
name: keyturn
author: keyturn maintainers
version_added: "1.0.0"
short_description: the current secret of a keyturn record (the credential keyturn last rotated)
description:
  - Reads one secret field (default C(password)) of each record named in the terms from a
    C(keyturn serve) API, with a bearer token. Use a C(consumer) token granted only the records,
    tags or folders the playbook needs (C(keyturn token create --role consumer --grant tag:ansible)).
  - Every read is audited by keyturn under the token's name.
  - Read at the time the variable is templated, so a playbook always gets the secret current at that
    moment; with keyturn's A/B rotation the previous credential stays valid while a job runs.
  - Errors never contain a secret; a record outside the token's grants fails with C(403) and no hint
    whether it exists.
options:
  _terms:
    description: Record uids or unique titles, for example C(sw0001 admin).
    required: true
    type: list
    elements: str
  field:
    description:
      - The field to read, as C(keyturn reveal --field) (type, label or custom label); C(login) and
        plain custom fields too where the token may read them (consumer and admin tokens).
    type: str
    default: password
  pair:
    description:
      - >-
        Return a dict with keys C(login) and C(password) (the value of O(field)) read as one pair. An
        A/B rotation swaps the record's login and password together, and two separate lookups could
        fall on either side of a swap; the login is read again after the password and the pair is
        read anew when it changed.
      - Take it once per play with M(ansible.builtin.set_fact) and point C(ansible_user) and
        C(ansible_password) at the fact (a variable holding the lookup would read again each time).
    type: bool
    default: false
  url:
    description: Base URL of the keyturn API.
    type: str
    required: true
    env:
      - name: KEYTURN_URL
    vars:
      - name: keyturn_url
  token:
    description: The API token (a consumer token); keep it in Ansible Vault or the environment.
    type: str
    required: true
    env:
      - name: KEYTURN_TOKEN
    vars:
      - name: keyturn_token
  ca_bundle:
    description: PEM file of the CA that signed the API's certificate (default the system store).
    type: path
    env:
      - name: KEYTURN_CA_BUNDLE
    vars:
      - name: keyturn_ca_bundle
  validate_certs:
    description: Verify the API's TLS certificate. Only for a lab; never turn it off in production.
    type: bool
    default: true
    vars:
      - name: keyturn_validate_certs
  timeout:
    description: Seconds to wait for the API.
    type: float
    default: 30
    vars:
      - name: keyturn_timeout
notes:
  - The plugin uses the Python standard library only (urllib, ssl).
  - Results are returned unsafe (never templated), as every lookup result.
seealso:
  - name: keyturn README, "Automation that uses the account"
    description: Ansible, Nornir and Oxidized recipes.
    link: https://github.com/keyturn/keyturn#automation-that-uses-the-account
"""

EXAMPLES = r"""
# cisco.ios connection variables filled from keyturn (group_vars/switches.yml)
ansible_connection: ansible.netcommon.network_cli
ansible_network_os: cisco.ios.ios
ansible_user: admin
ansible_password: "{{ lookup('keyturn.credentials.keyturn', inventory_hostname ~ ' admin') }}"
ansible_become_password: "{{ lookup('keyturn.credentials.keyturn', 'enable @ ' ~ inventory_hostname) }}"

# A/B rotation: login and password read as one pair, once per play (keyturn_record: a host variable)
- hosts: switches
  vars:
    ansible_user: "{{ keyturn_cred.login }}"
    ansible_password: "{{ keyturn_cred.password }}"
  pre_tasks:
    - ansible.builtin.set_fact:
        keyturn_cred: "{{ lookup('keyturn.credentials.keyturn', keyturn_record, pair=true) }}"
      delegate_to: localhost   # the host's connection variables need the fact this task sets
      no_log: true

# the short name: put the plugin on the lookup path (ansible.cfg `lookup_plugins = COLLECTION/plugins/lookup`
# or a `lookup_plugins/` directory beside the playbook); the `collections` play keyword skips lookups
- hosts: switches
  vars:
    ansible_password: "{{ lookup('keyturn', 'sw0001 admin', field='password') }}"
  tasks:
    - cisco.ios.ios_command:
        commands: [show version]
"""

RETURN = r"""
_raw:
  description:
    - One value per term, the current value of the field; with O(pair), a dict with C(login) and
      C(password).
  type: list
  elements: raw
"""

import json
import ssl
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase


def _detail(err):
    try:
        return str(json.loads(err.read().decode("utf-8", "replace")).get("detail"))[:300]
    except (ValueError, AttributeError, OSError):
        return err.reason


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        url = self.get_option("url").rstrip("/")
        token = self.get_option("token")
        field = self.get_option("field")
        if not url.startswith(("https://", "http://")):
            raise AnsibleError(f"keyturn lookup: url must be http(s)://..., not {url!r}")
        if self.get_option("validate_certs"):
            context = ssl.create_default_context(cafile=self.get_option("ca_bundle") or None)
        else:
            context = ssl._create_unverified_context()  # noqa: S323 - explicit lab-only option
        values = []
        for term in terms:
            if not self.get_option("pair"):
                values.append(self._read(url, token, context, term, field))
                continue
            login = self._read(url, token, context, term, "login")
            for _ in range(3):
                password = self._read(url, token, context, term, field)
                again = self._read(url, token, context, term, "login")
                if again == login:
                    break
                login = again
            else:
                raise AnsibleError(f"keyturn lookup {term!r}: its login changed on every read")
            values.append({"login": login, "password": password})
        return values

    def _read(self, url, token, context, term, field):
        request = Request(f"{url}/records/{quote(str(term), safe='')}/reveal", method="POST",  # noqa: S310
                          data=json.dumps({"field": field}).encode(),
                          headers={"Authorization": f"Bearer {token}",
                                   "Content-Type": "application/json", "Accept": "application/json"})
        try:
            # urlopen: the scheme was checked in run() (http/https only)
            with urlopen(request, timeout=self.get_option("timeout"), context=context) as resp:  # noqa: S310
                return json.loads(resp.read())["value"]
        except HTTPError as err:
            hint = {401: " (token unknown, expired or revoked)",
                    403: " (the token is not granted this record)"}.get(err.code, "")
            raise AnsibleError(f"keyturn lookup {term!r}: HTTP {err.code}{hint}: "
                               f"{_detail(err)}") from None
        except (URLError, OSError, ValueError, KeyError) as err:
            raise AnsibleError(f"keyturn lookup {term!r}: {url} unreachable or not keyturn: "
                               f"{type(err).__name__}: {err}") from None
