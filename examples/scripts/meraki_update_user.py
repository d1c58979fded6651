#!/usr/bin/env python3
"""Post-rotation script (KeeperPAM protocol): set a Meraki authentication user's new password.

Like KeeperPAM's Cisco Meraki sample, it reads the record titled "Cisco Authentication Record", whose
`password` is the Dashboard API key and whose custom field `network_id` names the network, finds the
auth user whose e-mail is the rotated `user`, and PUTs `{"password": NEW}`. Unlike the sample it matches
the e-mail case-insensitively, refuses Dashboard administrators, and **exits non-zero on any failure**
(the sample prints an error and exits 0).

The API host is hard-coded, as in the sample; to reach a lab simulator, run it with `HTTPS_PROXY` and
`REQUESTS_CA_BUNDLE` (requests honours both). The password and the API key are never printed.

Requires: python3 with `requests`.
"""

import base64
import json
import sys

import requests

BASE_URL = "https://api.meraki.com/api/v1"
TIMEOUT = 30


def fail(message):
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    for line in sys.stdin:
        params = json.loads(base64.b64decode(line))
        break
    else:
        fail("no input on stdin")
    records = json.loads(base64.b64decode(params["records"]))
    auth = next((r for r in records if r.get("title", "").lower() == "cisco authentication record"), None)
    if auth is None or not auth.get("password") or not auth.get("network_id"):
        fail("attach a 'Cisco Authentication Record' with the API key as password and a network_id field")
    email = params["user"]
    headers = {
        "X-Cisco-Meraki-API-Key": auth["password"],
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    url = f"{BASE_URL}/networks/{auth['network_id']}/merakiAuthUsers"
    try:
        resp = requests.get(url, headers=headers, timeout=TIMEOUT)
        if resp.status_code != 200:
            fail(f"listing users failed: HTTP {resp.status_code} {resp.text[:200]}")
        matches = [u for u in resp.json() if u.get("email", "").lower() == email.lower()]
        if len(matches) != 1:
            fail(f"No user found with the email: {email}" if not matches else f"several users match {email}")
        user = matches[0]
        if user.get("isAdmin"):
            fail(f"{email} is a Dashboard administrator; its password cannot be set through this API")
        resp = requests.put(f"{url}/{user['id']}", headers=headers,
                            json={"password": params["newPassword"]}, timeout=TIMEOUT)
        if resp.status_code != 200:
            fail(f"Failed to update password. Status code: {resp.status_code}, Error: {resp.text[:200]}")
    except requests.RequestException as exc:
        fail(f"Meraki API unreachable: {type(exc).__name__}")
    print(f"Password updated successfully for user {email}")


if __name__ == "__main__":
    main()
