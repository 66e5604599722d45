#!/usr/bin/env bash
# TEST-ONLY: builds the local stand-ins of the compose stack's third-party images
# (no registry is reachable from the test hosts), for tests/container/compose.rs and
# tests/container/compose.override.yml:
#
#   localhost/test-stand-in/secantus  for mongo:7                (SecantusDB from PyPI)
#   localhost/test-stand-in/minio     for quay.io/minio/minio    (the host's MinIO binary)
#   localhost/test-stand-in/mc        for quay.io/minio/mc       (a curl-based `mc` script)
#
#   eval "$(scripts/test-peers.sh env)" && tests/container/stand-ins/build.sh
#
# Idempotent: podman's layer cache makes a second run a few seconds. Needs podman, the
# base image docker.io/library/rust:1.95.0-bookworm (../shared/tools/containers/
# build-base-stand-ins.sh), INGEST_TEST_MINIO (the MinIO binary of scripts/test-peers.sh)
# and, once, network access for apt and pip (--network host).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
podman="${INGEST_TEST_CONTAINER_ENGINE:-podman}"
prefix="${STAND_IN_PREFIX:-localhost/test-stand-in}"

die() { printf 'stand-ins: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'stand-ins: %s\n' "$*" >&2; }

minio_bin="${INGEST_TEST_MINIO:-}"
[[ -n "$minio_bin" && -x "$minio_bin" ]] \
    || die "INGEST_TEST_MINIO is not an executable MinIO binary (eval \"\$(scripts/test-peers.sh env)\")"
# The SecantusDB and pymongo pins of the host's tests, from one place.
secantus_spec="$(sed -n "s/^SECANTUS_SPEC='\(.*\)'$/\1/p" "$repo/scripts/test-peers.sh")"
pymongo_spec="$(sed -n "s/^PYMONGO_SPEC='\(.*\)'$/\1/p" "$repo/scripts/test-peers.sh")"
[[ -n "$secantus_spec" && -n "$pymongo_spec" ]] || die "no SECANTUS_SPEC / PYMONGO_SPEC in scripts/test-peers.sh"

build() { # name context [podman build args...]
    local name="$1" context="$2"
    shift 2
    log "building $prefix/$name"
    "$podman" build --pull=never --network host -q -t "$prefix/$name:latest" "$@" "$context" >/dev/null \
        || die "podman build of $prefix/$name failed"
}

# The host's CA bundle over the image's while pip runs (a TLS-intercepting proxy).
ca_args=()
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    ca_args=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
build secantus "$here/secantus" "${ca_args[@]}" \
    --build-arg "SECANTUS_SPEC=$secantus_spec" --build-arg "PYMONGO_SPEC=$pymongo_spec"

# A context holding a copy of the MinIO binary (the build context cannot follow a path
# outside it); hard-linked when the file system allows.
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$here/minio/Containerfile" "$here/mc/mc" "$ctx/"
ln "$minio_bin" "$ctx/minio" 2>/dev/null || cp "$minio_bin" "$ctx/minio"
build minio "$ctx"
build mc "$here/mc"

"$podman" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -F "$prefix/" >&2 || true
