#!/usr/bin/env bash
# Store benchmark (run by hand, not by CI): the same backup of the sample data set to
# MinIO (S3), versitygw (S3), fake-gcs-server (GCS) and Azurite (Azure Blob), one after
# the other in one run, each REPEAT times; prints the median wall time per store.
#   benches/stores.sh [SIZE_MB [REPEAT]]      (default 100 MiB, 3 runs)
# The emulators keep objects in memory or a temp directory on this machine, so the
# figures compare the tool's upload paths, not the clouds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZE_MB="${1:-100}"
REPEAT="${2:-3}"
INGEST_PEERS_SKIP_DEPLOY=1 INGEST_PEERS_SKIP_DOCS=1 scripts/test-peers.sh install secantus minio fake-gcs azurite s3-second
eval "$(scripts/test-peers.sh env)"
# INGEST_BACKUP_BIN: a binary built already; else the release build of this checkout.
if [[ -z "${INGEST_BACKUP_BIN:-}" ]]; then
    cargo build --release --bins
fi
BIN="${INGEST_BACKUP_BIN:-${CARGO_TARGET_DIR:-target}/release/ingest-backup}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$INGEST_TEST_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "stores: nothing listens on $1" >&2; exit 1; }

MONGO_PORT="$(free_port)"
"$INGEST_TEST_PYTHON" -m secantus --host 127.0.0.1 --port "$MONGO_PORT" --storage-path :memory: >"$WORK/secantus.log" 2>&1 &
PIDS+=($!)
wait_port "$MONGO_PORT"
URI="mongodb://127.0.0.1:$MONGO_PORT/?directConnection=true"
"$BIN" sample-data --uri "$URI" --size-mb "$SIZE_MB" >/dev/null

MINIO_PORT="$(free_port)"
MINIO_ROOT_USER=bench MINIO_ROOT_PASSWORD=bench-secret-1 MINIO_BROWSER=off "$INGEST_TEST_MINIO" server --quiet \
    --address "127.0.0.1:$MINIO_PORT" --console-address "127.0.0.1:$(free_port)" "$WORK/minio" >/dev/null 2>&1 &
PIDS+=($!)
VGW_PORT="$(free_port)"
mkdir -p "$WORK/versitygw"
"$INGEST_TEST_S3_SECOND" --access bench --secret bench-secret-1 --port "127.0.0.1:$VGW_PORT" --quiet posix "$WORK/versitygw" >/dev/null 2>&1 &
PIDS+=($!)
GCS_PORT="$(free_port)"
"$INGEST_TEST_FAKE_GCS" -scheme http -host 127.0.0.1 -port "$GCS_PORT" -backend memory -public-host "127.0.0.1:$GCS_PORT" \
    -external-url "http://127.0.0.1:$GCS_PORT" -log-level warn >/dev/null 2>&1 &
PIDS+=($!)
AZ_PORT="$(free_port)"
(cd "$WORK" && exec "$INGEST_TEST_AZURITE" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" --inMemoryPersistence --skipApiVersionCheck --loose --disableTelemetry --silent) >/dev/null 2>&1 &
PIDS+=($!)
for port in "$MINIO_PORT" "$VGW_PORT" "$GCS_PORT" "$AZ_PORT"; do wait_port "$port"; done

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-1 AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
aws --endpoint-url "http://127.0.0.1:$MINIO_PORT" s3api create-bucket --bucket bench >/dev/null
aws --endpoint-url "http://127.0.0.1:$VGW_PORT" s3api create-bucket --bucket bench >/dev/null
curl -sf -X POST -H 'Content-Type: application/json' -d '{"name":"bench"}' "http://127.0.0.1:$GCS_PORT/storage/v1/b?project=bench" >/dev/null
"$INGEST_TEST_PYTHON" tests/common/azurite_container.py "$AZ_PORT" bench
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
AZ_CONNECTION="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$AZ_KEY;BlobEndpoint=http://127.0.0.1:$AZ_PORT/devstoreaccount1;"

# One backup to a store; prints its wall seconds.
timed_backup() {
    local store="$1"; shift
    local start end
    start="$(date +%s.%N)"
    env "$@" "$BIN" --quiet backup --uri "$URI" --store "$store" >/dev/null 2>>"$WORK/backups.log" || { cat "$WORK/backups.log" >&2; exit 1; }
    end="$(date +%s.%N)"
    echo "$end - $start" | bc
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

printf '%-28s %10s   (%s MiB of sample data, median of %s)\n' STORE 'WALL S' "$SIZE_MB" "$REPEAT"
run_store() {
    local label="$1"; shift
    local store="$1"; shift
    local times=()
    for i in $(seq 1 "$REPEAT"); do times+=("$(timed_backup "$store/$i" "$@")"); done
    printf '%-28s %10.1f\n' "$label" "$(printf '%s\n' "${times[@]}" | median)"
}
run_store "MinIO (s3://)" "s3://bench/minio" S3_ENDPOINT="http://127.0.0.1:$MINIO_PORT"
run_store "versitygw (s3://)" "s3://bench/versitygw" S3_ENDPOINT="http://127.0.0.1:$VGW_PORT"
run_store "fake-gcs-server (gs://)" "gs://bench/gcs" STORAGE_EMULATOR_HOST="http://127.0.0.1:$GCS_PORT"
run_store "Azurite (az://)" "az://bench/azure" AZURE_STORAGE_CONNECTION_STRING="$AZ_CONNECTION"
