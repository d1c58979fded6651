#!/usr/bin/env bash
# Post-rotation script (KeeperPAM protocol): append one line per rotation to a log file.
# Logs the time, the user and the record uids -- never a password. The file is $KEYTURN_EXAMPLE_LOG
# (attach with: keyturn script attach USER log_rotation.sh --env KEYTURN_EXAMPLE_LOG=/var/log/rot.log).
set -euo pipefail

: "${KEYTURN_EXAMPLE_LOG:?set KEYTURN_EXAMPLE_LOG to the log file path}"

IFS= read -r line || true
[ -n "$line" ] || { echo "ERROR: no input on stdin" >&2; exit 1; }
json=$(printf '%s' "$line" | base64 -d)

# Top-level string members of the payload (json.dumps output: "key": "value"); no jq needed.
field() {
    printf '%s' "$json" | grep -o "\"$1\": *\"[^\"]*\"" | head -n 1 | sed 's/^[^:]*: *"//; s/"$//'
}

printf '%s rotated user=%s userRecordUid=%s resourceRecordUid=%s\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(field user)" "$(field userRecordUid)" "$(field resourceRecordUid)" \
    >> "$KEYTURN_EXAMPLE_LOG"
echo "logged rotation of $(field user)"
