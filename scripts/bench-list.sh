#!/usr/bin/env bash
# Times `ingest-backup list` on an S3 store holding many backups (BENCHMARKS.md,
# "Listing a large store").
#
#   scripts/bench-list.sh [COUNT] BINARY...
#
# Starts a throwaway MinIO ($INGEST_TEST_MINIO, from scripts/test-peers.sh) on a free
# port, writes COUNT (default 500) fake backups under s3://bench/store (a 1 KiB archive,
# a 3 KiB sidecar manifest and a verification record each, as the tool names them),
# then runs `BINARY list --store s3://bench/store --json` three times per binary and
# prints the wall times. Needs the AWS CLI (test tool only) and python3.
set -euo pipefail

count=500
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then count="$1"; shift; fi
(( $# > 0 )) || { echo "usage: $0 [COUNT] BINARY..." >&2; exit 2; }
minio="${INGEST_TEST_MINIO:?set INGEST_TEST_MINIO (eval \"\$(scripts/test-peers.sh env)\")}"

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
console="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export AWS_ACCESS_KEY_ID=benchadmin AWS_SECRET_ACCESS_KEY=bench-secret-123 AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export S3_ENDPOINT="http://127.0.0.1:$port"
MINIO_ROOT_USER="$AWS_ACCESS_KEY_ID" MINIO_ROOT_PASSWORD="$AWS_SECRET_ACCESS_KEY" MINIO_BROWSER=off MINIO_UPDATE=off \
    "$minio" server --quiet --address "127.0.0.1:$port" --console-address "127.0.0.1:$console" "$work/data" >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs "$S3_ENDPOINT/minio/health/ready" >/dev/null && break; sleep 0.2; done

mkdir -p "$work/objects"
python3 - "$work/objects" "$count" <<'PY'
import json, os, sys, datetime
out, count = sys.argv[1], int(sys.argv[2])
start = datetime.datetime(2025, 1, 1)
for i in range(count):
    name = (start + datetime.timedelta(hours=i)).strftime("%Y-%m-%dT%H_%M")
    open(os.path.join(out, name + ".tar.gz"), "wb").write(os.urandom(1024))
    manifest = {"format_version": 1, "name": name, "padding": "x" * 3000}
    open(os.path.join(out, name + ".manifest.json"), "w").write(json.dumps(manifest))
    open(os.path.join(out, name + ".verify.json"), "w").write(json.dumps({"status": "passed", "verified_at": "2025-01-01T00:00:00Z", "findings": []}))
PY
aws --endpoint-url "$S3_ENDPOINT" s3 mb s3://bench >/dev/null
aws --endpoint-url "$S3_ENDPOINT" s3 cp --recursive --quiet "$work/objects" s3://bench/store
echo "store: s3://bench/store, $count backups ($(ls "$work/objects" | wc -l) objects), MinIO on loopback"

for binary in "$@"; do
    for run in 1 2 3; do
        start=$(date +%s.%N)
        listed=$("$binary" list --store s3://bench/store --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["backups"]))')
        end=$(date +%s.%N)
        printf '%s run %d: %d backups listed in %.2f s\n' "$binary" "$run" "$listed" "$(echo "$end - $start" | bc)"
    done
done
