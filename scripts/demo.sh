#!/usr/bin/env bash
# Quickstart demo: start a throwaway SecantusDB server (MongoDB-compatible, in
# memory), load sample data into it, back it up into ./backups and print how
# to restore the result.
#   DEMO_SIZE_MB  size of the sample data set in MB (default 50)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'demo: %s\n' "$*" >&2; }

CACHE="${INGEST_BACKUP_CACHE:-$HOME/.cache/ingest-backup}"
PY="$CACHE/venv/bin/python"
BIN="target/release/ingest-backup"

say "installing SecantusDB (test peer) if needed"
scripts/test-peers.sh install secantus >&2
[[ -x "$PY" ]] || die "SecantusDB virtualenv python not found at $PY"

say "building release binary"
cargo build --release --bins
[[ -x "$BIN" ]] || die "$BIN was not built"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ingest-demo.XXXXXX")"
server_pid=""
cleanup() {
    local status=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
URI="mongodb://127.0.0.1:$PORT/?directConnection=true"
log="$tmp/secantus.log"

say "starting SecantusDB on 127.0.0.1:$PORT (log: $log)"
"$PY" -m secantus --port "$PORT" --storage-path :memory: >"$log" 2>&1 &
server_pid=$!

ready=0
for _ in $(seq 1 60); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        tail -n 20 "$log" >&2 || true
        die "SecantusDB exited during startup (see log above)"
    fi
    if "$PY" -c '
import sys
from pymongo import MongoClient
c = MongoClient(sys.argv[1], serverSelectionTimeoutMS=500)
c.admin.command("hello")
' "$URI" >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.5
done
if [[ "$ready" != 1 ]]; then
    tail -n 20 "$log" >&2 || true
    die "SecantusDB did not answer 'hello' on port $PORT within 30 s"
fi

say "loading ${DEMO_SIZE_MB:-50} MB of sample data"
"$BIN" sample-data --uri "$URI" --size-mb "${DEMO_SIZE_MB:-50}"

say "backing up into ./backups"
"$BIN" backup --uri "$URI" --store ./backups --json >"$tmp/result.json"

say "the store now holds:"
"$BIN" list --store ./backups >&2

python3 - "$tmp/result.json" <<'PY'
import json, shlex, sys

with open(sys.argv[1]) as f:
    doc = json.load(f)
archive = doc.get("archive")
name = doc.get("name")
if not archive or not name:
    sys.exit("demo: error: backup JSON lacks 'archive' or 'name': %r" % (doc,))
oplog = doc.get("oplog") is True
restore = "mongorestore"
if oplog:
    restore += " --oplogReplay"
print()
print("Backup written: %s" % archive)
print()
print("To restore it into a MongoDB server (mongorestore from the MongoDB Database Tools):")
print("  tar -xzf %s" % shlex.quote(archive))
print("  %s %s" % (restore, shlex.quote("data/db/dump/%s" % name)))
if oplog:
    print()
    print("The backup includes an oplog slice; --oplogReplay replays it for a point-in-time consistent restore.")
PY
