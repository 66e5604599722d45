#!/usr/bin/env bash
# End-to-end benchmark (run by hand, not by CI): installs the test peers, builds the
# release binary and runs benches/e2e.py with them. Arguments go to e2e.py, e.g.
#   benches/e2e.sh --size-mb 100 --repeat 3
#   benches/e2e.sh --size-mb 100,500,2000 --shape sample,one-large,many-small
#   benches/e2e.sh --server secantus,ferretdb --size-mb 100
# The binary is built into $CARGO_TARGET_DIR (default target/) and passed as --binary;
# a --binary of your own, given after, wins.
# Needs the official mongo-tools (INGEST_TEST_MONGO_TOOLS or MONGO_TOOLS_BIN) and the AWS CLI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
INGEST_PEERS_SKIP_DEPLOY=1 scripts/test-peers.sh install
eval "$(scripts/test-peers.sh env)"
[[ -n "${INGEST_TEST_MONGO_TOOLS:-}" ]] || { echo "e2e: the official mongo-tools are unavailable (see scripts/test-peers.sh); set MONGO_TOOLS_BIN" >&2; exit 1; }
command -v aws >/dev/null || { echo "e2e: the AWS CLI is needed for the shell pipelines" >&2; exit 1; }
# matplotlib for the plots, into the test-peer virtualenv (pymongo is already there).
"$INGEST_TEST_PYTHON" -c 'import matplotlib' 2>/dev/null || "$INGEST_TEST_PYTHON" -m pip install -q 'matplotlib>=3.8'
cargo build --release --bins --features test-hooks
exec "$INGEST_TEST_PYTHON" benches/e2e.py --binary "${CARGO_TARGET_DIR:-target}/release/ingest-backup" "$@"
