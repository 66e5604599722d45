#!/usr/bin/env bash
# Where a backup's time goes on the server (run by hand, not by CI): loads the sample
# data set into a fresh SecantusDB, then samples the server with py-spy while
# `ingest-backup backup` runs (with debug timestamps per stage), and again while the
# read floor (a bare pymongo scan) runs. Writes folded stacks (flamegraph input) and the
# backup's log to target/profile/. Usage: benches/profile-server.sh [SIZE_MB]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
size_mb="${1:-100}"
INGEST_PEERS_SKIP_DEPLOY=1 scripts/test-peers.sh install >/dev/null
eval "$(scripts/test-peers.sh env)"
py_spy="$(dirname "$INGEST_TEST_PYTHON")/py-spy"
[[ -x "$py_spy" ]] || "$INGEST_TEST_PYTHON" -m pip install -q 'py-spy>=0.4'

cargo build --release --bins
out=target/profile
mkdir -p "$out"
port=$("$INGEST_TEST_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
uri="mongodb://127.0.0.1:$port/?directConnection=true"
"$INGEST_TEST_PYTHON" -m secantus --host 127.0.0.1 --port "$port" --storage-path :memory: --cache-size 2G >"$out/secantus.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
sleep 4
target/release/ingest-backup sample-data --uri "$uri" --size-mb "$size_mb"

# Samples the server (50 Hz) while the given command runs.
profile() {
    local name=$1
    shift
    "$py_spy" record -p "$server" -r 50 --format raw -o "$out/$name.folded" >/dev/null 2>&1 &
    local spy=$!
    sleep 2
    /usr/bin/time -f "$name: %e s wall, %U+%S s client CPU, %M KB peak RSS" "$@"
    sleep 1
    kill -INT "$spy"
    wait "$spy" || true
}

rm -rf "$out/store"
RUST_LOG=ingest_backup=debug profile backup target/release/ingest-backup backup --uri "$uri" --store "$out/store" 2>"$out/backup.log"
tail -1 "$out/backup.log"
profile read-floor "$INGEST_TEST_PYTHON" -c '
import sys, pymongo
from bson.raw_bson import RawBSONDocument
db = pymongo.MongoClient(sys.argv[1], document_class=RawBSONDocument)["ingest"]
print(sum(len(d.raw) for name in db.list_collection_names() for d in db[name].find()))' "$uri"
# The hottest server functions, inclusive, as a share of the samples.
for name in backup read-floor; do
    echo "== server samples during $name"
    "$INGEST_TEST_PYTHON" - "$out/$name.folded" <<'PY'
import collections, sys
inclusive, total = collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip().rpartition(" ")
    total += int(count)
    for frame in set(stack.split(";")):
        inclusive[frame] += int(count)
for frame, count in inclusive.most_common(14)[3:]:
    print(f"{100 * count / total:5.1f}%  {frame}")
PY
done
echo "folded stacks and the backup log in $out/"
