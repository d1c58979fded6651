#!/usr/bin/env python3
"""Post-rotation script (KeeperPAM protocol): give the config-backup tool the password keyturn just set.

Oxidized (CSV source, `router.db`) and RANCID (`.cloginrc`) log in to every device with a stored
credential; after a rotation that credential is stale and the next backup fails. This script, attached
to the rotated user, rewrites the stored password and asks Oxidized to fetch the node now, so a broken
credential shows at once instead of at the next backup cycle.

Input: one base64 line on stdin (keys `user`, `newPassword`, `resourceRecordUid`, `records`, ...).

Configuration (attachment `--env`, never a secret):

* `OXIDIZED_ROUTER_DB`  the Oxidized CSV source file to update (`source.csv.file` in Oxidized's config);
* `OXIDIZED_MAP`        its column map, as Oxidized's `source.csv.map` (default
                        `name=0,model=1,username=2,password=3`), and `OXIDIZED_DELIMITER` (default `:`);
* `OXIDIZED_NODE`       the node name in that file (default: the title of the rotation's resource record);
* `OXIDIZED_URL`        oxidized-web's base URL (e.g. `http://127.0.0.1:8888`): when set, the script calls
                        `GET /reload.json` (Oxidized re-reads its source: it keeps credentials in memory)
                        then `PUT /node/next/NODE.json` with `{"user": ..., "msg": ...}` (the node goes to
                        the head of the queue; user and message go on the backup's commit);
* `RANCID_CLOGINRC`     a RANCID `.cloginrc` to update as well: the first password of the
                        `add password NODE {...}` line is replaced when `add user NODE USER` names the
                        rotated user (RANCID has no API: the next `rancid-run` uses it).

Rows are matched on node name AND username: other accounts and devices stay as they are. Files are
rewritten atomically (temporary file + rename, same mode). A password the format cannot hold (Oxidized's
delimiter, a brace in `.cloginrc`, a line break) is refused before anything is written. Any failure exits
non-zero (keyturn records `rotated_script_errors`); the password is never printed.

Requires: python3 (standard library only).
"""

import base64
import json
import os
import re
import sys
import tempfile
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

TIMEOUT = 30
DEFAULT_MAP = "name=0,model=1,username=2,password=3"


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


def node_name(params):
    if os.environ.get("OXIDIZED_NODE"):
        return os.environ["OXIDIZED_NODE"]
    resource = next((r for r in params["records"] if r.get("uid") == params.get("resourceRecordUid")), None)
    if resource is None or not resource.get("title"):
        fail("set OXIDIZED_NODE (the rotation has no resource record to take the node name from)")
    return resource["title"]


def column_map():
    spec = os.environ.get("OXIDIZED_MAP") or DEFAULT_MAP
    try:
        columns = {k.strip(): int(v) for k, v in (item.split("=") for item in spec.split(","))}
    except ValueError:
        fail(f"OXIDIZED_MAP {spec!r}: expected name=N,username=N,password=N,...")
    missing = {"name", "username", "password"} - set(columns)
    if missing:
        fail(f"OXIDIZED_MAP lacks {', '.join(sorted(missing))}")
    return columns


def write_atomically(path, text):
    mode = os.stat(path).st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".keyturn-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def update_router_db(path, node, user, password):
    delimiter = os.environ.get("OXIDIZED_DELIMITER") or ":"
    columns = column_map()
    if delimiter in password:
        fail(f"the new password contains {delimiter!r}, which Oxidized's CSV source cannot hold; exclude "
             "it from the rotation policy (or set another OXIDIZED_DELIMITER)")
    try:
        with open(path, encoding="utf-8") as src:
            lines = src.read().splitlines(keepends=True)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    changed = 0
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        if not body.strip() or body.lstrip().startswith("#"):
            continue
        cells = body.split(delimiter)
        width = max(columns.values()) + 1
        if len(cells) < width or cells[columns["name"]] != node or cells[columns["username"]] != user:
            continue
        cells[columns["password"]] = password
        lines[i] = delimiter.join(cells) + line[len(body):]
        changed += 1
    if not changed:
        fail(f"{path}: no row for node {node!r} with username {user!r}")
    write_atomically(path, "".join(lines))
    return changed


def update_cloginrc(path, node, user, password):
    if re.search(r"[{}\\\s]", password):
        fail("the new password contains a brace, backslash or blank, which this script does not write "
             "into .cloginrc; exclude them from the rotation policy")
    try:
        with open(path, encoding="utf-8") as src:
            text = src.read()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    users = re.findall(rf"^\s*add\s+user\s+{re.escape(node)}\s+\{{?([^\s{{}}]+)\}}?\s*$", text, re.MULTILINE)
    if user not in users:
        fail(f"{path}: no 'add user {node} {user}' line")
    pattern = re.compile(rf"^(\s*add\s+password\s+{re.escape(node)}\s+)(\{{[^}}]*\}}|\S+)", re.MULTILINE)
    text, count = pattern.subn(lambda m: m.group(1) + "{" + password + "}", text, count=1)
    if not count:
        fail(f"{path}: no 'add password {node} ...' line")
    write_atomically(path, text)


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = Request(url, data=data, method=method,
                      headers={"Accept": "application/json", "Content-Type": "application/json"})
    try:
        with urlopen(request, timeout=TIMEOUT) as resp:
            return resp.status
    except HTTPError as exc:
        fail(f"Oxidized {method} {url}: HTTP {exc.code}")
    except (URLError, OSError) as exc:
        fail(f"Oxidized {method} {url}: {getattr(exc, 'reason', exc)}")


def main():
    params = read_params()
    user, password = params["user"], params["newPassword"]
    if not password or "\n" in password or "\r" in password:
        fail("no usable new password in the input")
    node = node_name(params)
    router_db, cloginrc = os.environ.get("OXIDIZED_ROUTER_DB"), os.environ.get("RANCID_CLOGINRC")
    if not router_db and not cloginrc:
        fail("set OXIDIZED_ROUTER_DB (and/or RANCID_CLOGINRC)")
    if router_db:
        rows = update_router_db(router_db, node, user, password)
        print(f"{router_db}: password of {user} on {node} updated ({rows} row{'s' * (rows != 1)})")
    if cloginrc:
        update_cloginrc(cloginrc, node, user, password)
        print(f"{cloginrc}: password of {user} on {node} updated")
    base = (os.environ.get("OXIDIZED_URL") or "").rstrip("/")
    if base:
        call("GET", f"{base}/reload.json")
        call("PUT", f"{base}/node/next/{quote(node, safe='')}.json",
             {"user": "keyturn", "msg": f"credential of {user} rotated by keyturn"})
        print(f"Oxidized at {base}: source reloaded, {node} queued for the next fetch")


if __name__ == "__main__":
    main()
