#!/usr/bin/env python3
"""Post-rotation script (KeeperPAM protocol): POST a non-secret notice to a webhook.

The URL comes from env `KEYTURN_NOTIFY_URL` (attach with `--env KEYTURN_NOTIFY_URL=https://...`). The
JSON body names the user and the record uids and the time; it never carries a password. Exits non-zero
when the webhook does not answer 2xx. TLS honours `SSL_CERT_FILE`; proxies honour `HTTPS_PROXY`.

Requires: python3 with `httpx`.
"""

import base64
import json
import os
import sys
import time

import httpx


def main():
    url = os.environ.get("KEYTURN_NOTIFY_URL")
    if not url:
        print("ERROR: set KEYTURN_NOTIFY_URL", file=sys.stderr)
        sys.exit(1)
    for line in sys.stdin:
        params = json.loads(base64.b64decode(line))
        break
    else:
        print("ERROR: no input on stdin", file=sys.stderr)
        sys.exit(1)
    notice = {
        "event": "password_rotated",
        "user": params["user"],
        "userRecordUid": params["userRecordUid"],
        "resourceRecordUid": params["resourceRecordUid"],
        "providerRecordUid": params["providerRecordUid"],
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        resp = httpx.post(url, json=notice, timeout=15)
    except httpx.HTTPError as exc:
        print(f"ERROR: webhook unreachable: {type(exc).__name__}", file=sys.stderr)
        sys.exit(1)
    if not resp.is_success:
        print(f"ERROR: webhook answered HTTP {resp.status_code}", file=sys.stderr)
        sys.exit(1)
    print(f"notified {url.split('?')[0]} ({resp.status_code})")


if __name__ == "__main__":
    main()
