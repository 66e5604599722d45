#!/usr/bin/env bash
# Builds the image from the Dockerfile, unchanged, and runs the container tests
# (tests/container: the image run hardened as the chart's pods run it, the chart's pod
# templates under `podman kube play`, the compose stack under podman-compose).
#
#   scripts/test-container.sh          build the image, then run the container tests
#   scripts/test-container.sh build    build and check the image only; print the
#                                      variables the tests read (scripts/test.sh evals them)
#
# Works with podman (every test) or Docker (the image tests; kube play and
# podman-compose need podman). Where the base images cannot be pulled (no registry) and
# ../shared/tools/containers exists, its scripts set podman up and build local
# stand-ins under the Dockerfile's exact FROM names. INGEST_TEST_IMAGE names the image
# (default localhost/ingest-backup:test).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=${1:-test}
image=${INGEST_TEST_IMAGE:-localhost/ingest-backup:test}
tools=../shared/tools/containers
say() { echo "test-container.sh: $*" >&2; }

# The engine: podman, else docker; under CI podman is installed when it is missing.
engine=${INGEST_TEST_CONTAINER_ENGINE:-}
if [[ -z "$engine" ]]; then
    if command -v podman >/dev/null; then
        engine=podman
    elif command -v docker >/dev/null; then
        engine=docker
    elif [[ -x "$tools/setup-podman.sh" ]]; then
        say "installing podman ($tools/setup-podman.sh)"
        "$tools/setup-podman.sh" >&2
        engine=podman
    else
        say "error: no container engine: install podman (or Docker) to build and run the image"
        exit 1
    fi
fi

build_args=(build -t "$image" .)
if [[ "$engine" == podman ]]; then
    # The configuration of ../shared/tools/containers (runc, cgroupfs) when podman came
    # from elsewhere but cannot run containers yet.
    if [[ ! -f /etc/containers/containers.conf && -x "$tools/setup-podman.sh" ]]; then
        "$tools/setup-podman.sh" >&2
    fi
    # The FROM images: pulled where a registry answers, else the local stand-ins.
    from_images=$(awk '/^FROM /{print $2}' Dockerfile)
    missing=0
    for from in $from_images; do
        podman image exists "$from" || missing=1
    done
    if ((missing)) && [[ -x "$tools/build-base-stand-ins.sh" ]]; then
        say "building local stand-ins for the base images ($tools/build-base-stand-ins.sh)"
        "$tools/build-base-stand-ins.sh" >&2
    fi
    missing=0
    for from in $from_images; do
        podman image exists "$from" || missing=1
    done
    # --network host: cargo reaches crates.io during the build as the host does.
    if ((missing)); then
        build_args=(build --network host -t "$image" .)
    else
        build_args=(build --pull=never --network host -t "$image" .)
    fi
fi

say "$engine ${build_args[*]}"
started=$(date +%s)
"$engine" "${build_args[@]}" >&2
say "image built in $(($(date +%s) - started)) s"

# The checks every image must pass before anything runs in it: the tool starts and
# prints its help. (tests/container/image.rs checks the rest: no shell, uid, size, spool.)
"$engine" run --rm --read-only --user 65532:65532 --cap-drop ALL "$image" --help >/dev/null
size=$("$engine" image inspect --format '{{.Size}}' "$image")
say "image $image: $((size / 1000000)) MB"

# podman-compose and the stand-ins of the compose stack's database, MinIO and mc images.
if [[ "$engine" == podman ]]; then
    if ! command -v podman-compose >/dev/null && [[ "${CI:-}" == true || "${CI:-}" == 1 ]]; then
        say "installing podman-compose (Debian's package)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman-compose >/dev/null
    fi
    # (Without the test peers' MinIO yet, tests/container/compose.rs builds them itself.)
    if [[ -x tests/container/stand-ins/build.sh && -n "${INGEST_TEST_MINIO:-}" ]]; then
        tests/container/stand-ins/build.sh >&2
    fi
fi

if [[ "$mode" == build ]]; then
    echo "export INGEST_TEST_IMAGE='$image' INGEST_TEST_CONTAINER_ENGINE='$engine'"
    exit 0
fi
export INGEST_TEST_IMAGE="$image" INGEST_TEST_CONTAINER_ENGINE="$engine"
exec scripts/test.sh --test container
