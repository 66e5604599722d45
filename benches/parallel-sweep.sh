#!/usr/bin/env bash
# How `--parallel` changes a backup against one server (run by hand, not by CI): loads
# the sample data set into a fresh SecantusDB, runs the read floor (a bare pymongo
# scan), then `ingest-backup backup --parallel N` for each N given (to a local store,
# debug timestamps per stage), then the read floor again. Prints wall, CPU and peak RSS
# of each, and the stage times from each backup's log; logs in target/parallel-sweep/.
# Usage: benches/parallel-sweep.sh [SIZE_MB] [N ...]   (default: 300 4 1 2 4 1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
size_mb="${1:-300}"
shift || true
counts=("$@")
[[ ${#counts[@]} -gt 0 ]] || counts=(4 1 2 4 1)
INGEST_PEERS_SKIP_DEPLOY=1 scripts/test-peers.sh install >/dev/null
eval "$(scripts/test-peers.sh env)"
cargo build --release --bins
binary=target/release/ingest-backup
out=target/parallel-sweep
rm -rf "$out" && mkdir -p "$out"
port=$("$INGEST_TEST_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
uri="mongodb://127.0.0.1:$port/?directConnection=true"
"$INGEST_TEST_PYTHON" -m secantus --host 127.0.0.1 --port "$port" --storage-path :memory: \
    --cache-size "$((1 + size_mb * 3 / 1024))G" >"$out/secantus.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
sleep 4
"$binary" sample-data --uri "$uri" --size-mb "$size_mb"

read_floor() {
    /usr/bin/time -f "read floor: %e s wall, %U+%S s CPU, %M KB peak RSS" "$INGEST_TEST_PYTHON" -c '
import sys, pymongo
from bson.raw_bson import RawBSONDocument
db = pymongo.MongoClient(sys.argv[1], document_class=RawBSONDocument)["ingest"]
sum(len(d.raw) for name in db.list_collection_names() for d in db[name].find())' "$uri"
}

# Seconds between the log lines that open and close each stage.
stages() {
    "$INGEST_TEST_PYTHON" - "$1" <<'PY'
import re, sys
from datetime import datetime
times = {}
for line in open(sys.argv[1]):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    match = re.match(r"(\S+Z)\s+\w+\s+(Starting backup|Discovered|Dumped|Captured the oplog|Backup complete)", line)
    if match:
        times.setdefault(match[2], []).append(datetime.fromisoformat(match[1].replace("Z", "+00:00")))
span = lambda a, b: (b - a).total_seconds()
print(f"  start + discovery {span(times['Starting backup'][0], times['Discovered'][0]):.1f} s, "
      f"collections {span(times['Discovered'][0], times['Dumped'][-1]):.1f} s, "
      f"oplog window {span(times['Dumped'][-1], times.get('Captured the oplog', times['Dumped'])[-1]):.1f} s")
PY
}

read_floor
for n in "${counts[@]}"; do
    rm -rf "$out/store"
    log="$out/backup-parallel-$n-$(date +%s).log"
    RUST_LOG=ingest_backup=debug /usr/bin/time -f "backup --parallel $n: %e s wall, %U+%S s CPU, %M KB peak RSS" \
        "$binary" backup --uri "$uri" --store "$out/store" --parallel "$n" 2>"$log"
    tail -1 "$log"
    stages "$log"
done
read_floor
