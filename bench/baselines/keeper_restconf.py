#!/usr/bin/env python3
"""Baseline: the Keeper Gateway model of RESTCONF rotation — one script process per rotation.

Our own code, written in the style of KeeperPAM's sample IOS XE post-rotation script: the gateway
starts one Python process per rotation and feeds it one base64 line on stdin; the script uses
`requests` without a session (so every call opens a new TCP + TLS connection), GETs the username list,
PATCHes the new password into `Cisco-IOS-XE-native:native`, and (unlike the sample, so that it does
the same durable work as keyturn) POSTs `cisco-ia:save-config`. Exit 0 on success.

Input (base64 JSON on stdin): {"user": NAME, "newPassword": NEW, "records": base64(JSON list)} where
the list holds a "Cisco Authentication Record" with `host_endpoint`, `login`, `password`.
TLS is verified with `REQUESTS_CA_BUNDLE` (the lab CA), like keyturn's per-device CA bundle, unless the
auth record says `"verify_tls": false`: stock IOS XE's self-signed certificate has no subjectAltName, so
requests cannot verify it, and requests has no fingerprint pinning — script authors turn verification
off for such devices.
"""

import base64
import json
import sys

import requests
import urllib3

HEADERS = {"Accept": "application/yang-data+json", "Content-Type": "application/yang-data+json"}


def main():
    params = json.loads(base64.b64decode(sys.stdin.readline()))
    records = json.loads(base64.b64decode(params["records"]))
    auth = next(r for r in records if r.get("title") == "Cisco Authentication Record")
    base = f"https://{auth['host_endpoint']}/restconf"
    login = (auth["login"], auth["password"])
    user = params["user"]
    verify = auth.get("verify_tls", True)
    if not verify:
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    resp = requests.get(f"{base}/data/Cisco-IOS-XE-native:native/username", auth=login, headers=HEADERS,
                        timeout=30, verify=verify)
    if resp.status_code != 200:
        print(f"GET failed: {resp.status_code}", file=sys.stderr)
        sys.exit(1)
    entries = resp.json().get("Cisco-IOS-XE-native:username", [])
    entry = next((u for u in entries if u.get("name") == user), None)
    if entry is None:
        print(f"user {user} not found", file=sys.stderr)
        sys.exit(1)
    # IOS refuses a `password` for a user holding a `secret`: write the kind the user has.
    kind = "password" if "password" in entry else "secret"
    body = {"Cisco-IOS-XE-native:native": {"username": [
        {"name": user, kind: {"encryption": "0", kind: params["newPassword"]}}]}}
    resp = requests.patch(f"{base}/data/Cisco-IOS-XE-native:native", auth=login, headers=HEADERS,
                          data=json.dumps(body), timeout=30, verify=verify)
    if resp.status_code not in (200, 204):
        print(f"PATCH failed: {resp.status_code}", file=sys.stderr)
        sys.exit(1)
    resp = requests.post(f"{base}/operations/cisco-ia:save-config", auth=login, headers=HEADERS, timeout=60,
                         verify=verify)
    if resp.status_code not in (200, 204):
        print(f"save-config failed: {resp.status_code}", file=sys.stderr)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
