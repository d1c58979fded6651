#!/usr/bin/env python3
"""Fallback SSH baseline (used only when Ansible cannot be installed): one Netmiko session per device,
sequentially — log in, enable, `username U secret NEW`, `write memory`.

Input: a JSON list on stdin of {"host", "port", "admin", "password", "enable", "user", "new"}.
Prints how many devices succeeded; exit 1 if any failed.
"""

import json
import sys

from netmiko import ConnectHandler


def main():
    jobs = json.load(sys.stdin)
    failed = 0
    for job in jobs:
        try:
            with ConnectHandler(device_type="cisco_xe", host=job["host"], port=job["port"],
                                username=job["admin"], password=job["password"],
                                secret=job["enable"]) as conn:
                conn.enable()
                conn.send_config_set([f"username {job['user']} secret {job['new']}"])
                conn.save_config()
        except Exception as exc:
            failed += 1
            print(f"{job['host']}:{job['port']}: {type(exc).__name__}", file=sys.stderr)
    print(f"{len(jobs) - failed} ok, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
