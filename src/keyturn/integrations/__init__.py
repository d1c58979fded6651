"""Automation that uses the account: where scripts and tools read the credential keyturn just rotated.

* `source`: one `reveal(ref, field)` over either a keyturn server (`KEYTURN_URL` + `KEYTURN_TOKEN`,
  `POST /records/{ref}/reveal`) or the local vault; `from_env()` picks one the way `keyturn exec` does.
* `nornir`: a Nornir inventory transform function (`transform_function: keyturn`) that fills each host's
  username/password from keyturn.

The Ansible lookup plugin is shipped outside the package (`integrations/ansible/keyturn/`, a collection
with no dependency on keyturn: an Ansible controller needs only network access to `keyturn serve`).
"""
