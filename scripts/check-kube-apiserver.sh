#!/usr/bin/env bash
# Checks the Helm chart against a real Kubernetes API server, without a cluster: builds
# kube-apiserver (k8s.io/kubernetes, with its ./staging replaces pointed at the published
# k8s.io/* modules, which the module zip lacks) and etcd (go.etcd.io/etcd/server/v3's
# etcdmain) from the Go module proxy into the peer cache, starts both on loopback ports
# with token authentication, then:
#   - `kubectl apply --dry-run=server` of the chart rendered for every stage file, and of
#     one render with every optional object (drill, exporter, ServiceMonitor,
#     PrometheusRule; the last two need the Prometheus Operator's CRDs, which a bare
#     API server lacks: they are reported, not failed);
#   - `kubectl create --dry-run=server` of the restore Job;
#   - helm/reschedule.sh against the applied prod release: a shifted schedule, one it
#     cannot shift (verify keeps its own) and a refused one (exit 2, nothing patched).
#
#   scripts/check-kube-apiserver.sh
#
# Not run by .ci/run: the first build takes about 7 minutes and 1.9 GB of memory on 2
# cores (kube-apiserver 6 min, etcd 1 min); later runs reuse the binaries. Needs go,
# kubectl, openssl and the peers of scripts/test-peers.sh (helm).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
KUBE_VERSION=1.31.4
ETCD_VERSION=3.5.17
cache=${INGEST_BACKUP_CACHE:-$HOME/.cache/ingest-backup}/kube-apiserver
bin=$cache/v$KUBE_VERSION
say() { echo "check-kube-apiserver.sh: $*" >&2; }
mkdir -p "$bin"

if [[ ! -x "$bin/kube-apiserver" ]]; then
    say "building kube-apiserver $KUBE_VERSION from the Go module proxy"
    dir=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    src=$(mktemp -d)
    cp -r "$dir"/. "$src"
    chmod -R u+w "$src"
    rm -rf "$src/vendor" "$src/go.work" "$src/go.work.sum"
    sed -i -E "s#(k8s\.io/[A-Za-z0-9_-]+) => \./staging/src/k8s\.io/[A-Za-z0-9_-]+#\1 => \1 v0.${KUBE_VERSION#1.}#" "$src/go.mod"
    (cd "$src" && GOFLAGS=-mod=mod go build -p 1 -o "$bin/kube-apiserver" ./cmd/kube-apiserver)
    rm -rf "$src"
fi
if [[ ! -x "$bin/etcd" ]]; then
    say "building etcd $ETCD_VERSION from the Go module proxy"
    src=$(mktemp -d)
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > "$src/main.go"
    (cd "$src" && go mod init etcd-for-tests >/dev/null 2>&1 && go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" && go mod tidy && go build -p 1 -o "$bin/etcd" .)
    rm -rf "$src"
fi

eval "$(scripts/test-peers.sh env)"
helm=${INGEST_TEST_HELM:-helm}
work=$(mktemp -d)
pids=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
etcd_port=$(free_port)
api_port=$(free_port)
"$bin/etcd" --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$(free_port)" >"$work/etcd.log" 2>&1 &
pids+=($!)
openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
echo "$token,admin,admin,system:masters" >"$work/tokens.csv"
"$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" --cert-dir "$work/certs" --secure-port "$api_port" \
    --bind-address 127.0.0.1 --token-auth-file "$work/tokens.csv" --authorization-mode AlwaysAllow \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$work/sa.key" \
    --service-account-signing-key-file "$work/sa.key" --service-cluster-ip-range 10.0.0.0/24 >"$work/apiserver.log" 2>&1 &
pids+=($!)
export KUBECONFIG=$work/kubeconfig
kubectl config set-cluster local --server "https://127.0.0.1:$api_port" --insecure-skip-tls-verify=true >/dev/null
kubectl config set-credentials admin --token "$token" >/dev/null
kubectl config set-context local --cluster local --user admin >/dev/null
kubectl config use-context local >/dev/null
for _ in $(seq 1 90); do
    kubectl get --raw /readyz >/dev/null 2>&1 && break
    sleep 1
done
kubectl get --raw /readyz >/dev/null || { tail -20 "$work/apiserver.log" >&2; say "error: the API server never became ready"; exit 1; }
say "kube-apiserver $KUBE_VERSION ready on 127.0.0.1:$api_port"
kubectl create namespace ingest-backup-check >/dev/null

render() { "$helm" template ingest-backup helm/ingest-backup --kube-version "$KUBE_VERSION" --namespace ingest-backup-check \
    --set image.repository=registry.example.com/ingest-backup --set secrets.awsAccessKeyId=AK --set secrets.awsSecretAccessKey=SK "$@"; }
status=0
for stage in helm/config/*.yaml; do
    say "server-side dry run: $stage"
    render -f "$stage" >"$work/stage.yaml"
    kubectl -n ingest-backup-check apply --dry-run=server -f "$work/stage.yaml" || status=1
done
say "server-side dry run: every optional object"
render -f helm/config/prod.yaml --set drill.enabled=true --set drill.scratchUri.value=mongodb://scratch:27017 \
    --set exporter.enabled=true --set exporter.serviceMonitor.enabled=true --set monitoring.prometheusRule.enabled=true >"$work/full.yaml"
if ! kubectl -n ingest-backup-check apply --dry-run=server -f "$work/full.yaml" >"$work/full.out" 2>&1; then
    # Only the Prometheus Operator's kinds may be missing.
    if grep -v 'monitoring.coreos.com/v1\|ensure CRDs are installed first' "$work/full.out" | grep -qv 'created (server dry run)'; then
        cat "$work/full.out" >&2
        status=1
    fi
fi
cat "$work/full.out"
say "server-side dry run: the restore Job"
"$helm" template ingest-backup helm/ingest-backup --kube-version "$KUBE_VERSION" -f helm/config/prod.yaml \
    --set image.repository=registry.example.com/ingest-backup --set restore.enabled=true --set restore.backup=latest \
    --show-only templates/restore-job.yaml >"$work/restore.yaml"
kubectl -n ingest-backup-check create --dry-run=server -f "$work/restore.yaml" || status=1

say "helm/reschedule.sh against the applied prod release"
render -f helm/config/prod.yaml >"$work/prod.yaml"
kubectl -n ingest-backup-check apply -f "$work/prod.yaml" >/dev/null
schedules() { kubectl -n ingest-backup-check get cronjob ingest-backup ingest-backup-verify -o jsonpath='{.items[*].spec.schedule}'; }
helm/reschedule.sh -n ingest-backup-check '15 2 * * *'
[[ "$(schedules)" == "15 2 * * * 45 2 * * *" ]] || { say "error: after '15 2 * * *': $(schedules)"; status=1; }
helm/reschedule.sh -n ingest-backup-check '*/5 * * * *'
[[ "$(schedules)" == "*/5 * * * * 45 2 * * *" ]] || { say "error: after '*/5 * * * *': $(schedules)"; status=1; }
if helm/reschedule.sh -n ingest-backup-check '61 * * * *'; then
    say "error: '61 * * * *' was accepted"
    status=1
fi
[[ "$(schedules)" == "*/5 * * * * 45 2 * * *" ]] || { say "error: a refused schedule patched: $(schedules)"; status=1; }
if ((status == 0)); then say "passed"; else say "FAILED"; fi
exit "$status"
