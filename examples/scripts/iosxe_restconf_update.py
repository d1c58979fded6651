#!/usr/bin/env python3
"""Post-rotation script (KeeperPAM protocol): set a local user's new password on Cisco IOS XE over RESTCONF.

Input: one base64 line on stdin (keys providerRecordUid, resourceRecordUid, userRecordUid, newPassword,
oldPassword, user, records). Which device and which credential:

* device: the `host_endpoint` field ("10.0.0.1" or "10.0.0.1:8443") of the record titled
  "Cisco Authentication Record", else of the resource record, else the resource record's `host` field
  (a "host[:port]" string or Keeper's {hostName, port} object);
* RESTCONF login: `login`/`password` of the "Cisco Authentication Record" (a privilege-15 admin), else
  the rotated user itself with its *old* password (self-rotation).

Steps: GET the username list, check the user exists (a PATCH would otherwise create it), PATCH the new
value into the container the user already has (`secret` by default, hashed on the device; `password`
if the user holds a reversible password, since IOS refuses both), POST save-config, then log in as the
user with the new password to prove it works. Any failure exits non-zero. TLS is verified; point
`REQUESTS_CA_BUNDLE` at the device's CA. The password is never printed.

Requires: python3 with `requests`.
"""

import base64
import json
import sys
from urllib.parse import quote

import requests

TIMEOUT = 30
HEADERS = {"Accept": "application/yang-data+json", "Content-Type": "application/yang-data+json"}


def fail(message):
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(1)


def read_params():
    for line in sys.stdin:
        params = json.loads(base64.b64decode(line))
        break
    else:
        fail("no input on stdin")
    params["records"] = json.loads(base64.b64decode(params["records"]))
    return params


def by_title(records, title):
    return next((r for r in records if r.get("title", "").lower() == title), None)


def device_base(params):
    records = params["records"]
    auth = by_title(records, "cisco authentication record")
    resource = next((r for r in records if r["uid"] == params["resourceRecordUid"]), None)
    endpoint = None
    for rec in (auth, resource):
        if rec and rec.get("host_endpoint"):
            endpoint = rec["host_endpoint"]
            break
    host = resource.get("host") if resource else None
    if endpoint is None and isinstance(host, dict):  # Keeper's {hostName, port} object
        endpoint = host.get("hostName", "")
        if host.get("port"):
            endpoint += f":{host['port']}"
    elif endpoint is None and isinstance(host, str):  # "host" or "host:port"
        endpoint = host
    if not endpoint:
        fail("no device address: add a host_endpoint field to the resource or Cisco Authentication Record")
    if auth and auth.get("login") and auth.get("password"):
        login = (auth["login"], auth["password"])
    else:
        if not params["oldPassword"]:
            fail("no Cisco Authentication Record and no old password to log in with")
        login = (params["user"], params["oldPassword"])
    return f"https://{endpoint}/restconf", login


def main():
    params = read_params()
    user = params["user"]
    if not user:
        fail("the user record has no login")
    base, login = device_base(params)
    session = requests.Session()
    session.auth = login
    session.headers.update(HEADERS)
    try:
        resp = session.get(f"{base}/data/Cisco-IOS-XE-native:native/username", timeout=TIMEOUT)
        if resp.status_code != 200:
            fail(f"reading the user list failed: HTTP {resp.status_code}")
        entries = resp.json().get("Cisco-IOS-XE-native:username", [])
        entry = next((u for u in entries if u.get("name") == user), None)
        if entry is None:
            fail(f"user {user!r} does not exist on the device; refusing to create it")
        kind = "password" if "password" in entry else "secret"
        body = {"Cisco-IOS-XE-native:native": {"username": [
            {"name": user, kind: {"encryption": "0", kind: params["newPassword"]}}
        ]}}
        resp = session.patch(f"{base}/data/Cisco-IOS-XE-native:native", json=body, timeout=TIMEOUT)
        if resp.status_code not in (200, 204):
            fail(f"setting the new {kind} failed: HTTP {resp.status_code}")
        if login[0] == user:
            session.auth = (user, params["newPassword"])
        resp = session.post(f"{base}/operations/cisco-ia:save-config", timeout=TIMEOUT)
        if resp.status_code not in (200, 204):
            fail(f"save-config failed: HTTP {resp.status_code} (the change is only in running-config)")
        check = requests.get(
            f"{base}/data/Cisco-IOS-XE-native:native/username={quote(user, safe='')}",
            auth=(user, params["newPassword"]), headers=HEADERS, timeout=TIMEOUT,
        )
        if check.status_code == 401:
            fail(f"the device does not accept the new {kind} for {user!r}")
    except requests.RequestException as exc:
        fail(f"device unreachable: {type(exc).__name__}")
    print(f"{kind} of {user!r} updated and saved on {base.split('/')[2]}")


if __name__ == "__main__":
    main()
