#!/usr/bin/env bash
# Restores a backup on Kubernetes with a one-off Job rendered by the chart:
#
#   helm/restore.sh [-n NAMESPACE] STAGE NAME [--drop] [--to-time T] [--target-secret SECRET[:KEY]] [-f VALUES]...
#
# - STAGE picks helm/config/STAGE.yaml (the bucket, prefix and image of that
#   environment), as DEPLOYMENT_STAGE does for helm/setup.sh.
# - NAME is the backup (2018-04-04T11_37, see `ingest-backup list`) or latest.
# - The target's connection string is read from a Secret, never from the command line:
#   by default ingest-backup-restore-target, key RESTORE_URI:
#     kubectl create secret generic ingest-backup-restore-target --from-literal=RESTORE_URI='mongodb://user:pass@target:27017'
# - --drop replaces each target collection; without it existing documents are kept and
#   duplicates reported. --to-time is passed to the tool as given.
# - -f adds values files (say, the secrets.existingSecret of an install that used one).
#
# It runs exactly two commands:
#   helm template ingest-backup CHART -f helm/config/STAGE.yaml [-f VALUES]... --set restore.enabled=true
#        --set-string restore.backup=NAME [...] --show-only templates/restore-job.yaml [--namespace NS]
#   kubectl [--namespace NS] create -f <the rendered Job> -o name
# The Job is not owned by the CronJob, is never retried (backoffLimit 0) and is kept a
# week for its logs. HELM and KUBECTL name other helm and kubectl commands; the
# namespace is -n, else HELM_NAMESPACE, else the kube context's.
#
# Exit status: 0 the Job was created; 2 bad input (nothing was run); otherwise helm's or kubectl's.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHART="$HERE/ingest-backup"
CONFIG_DIR="$HERE/config"
RELEASE=ingest-backup
HELM="${HELM:-helm}"
KUBECTL="${KUBECTL:-kubectl}"

usage() {
    cat >&2 <<'USAGE'
usage: helm/restore.sh [-n NAMESPACE] STAGE NAME|latest [--drop] [--to-time T] [--target-secret SECRET[:KEY]] [-f VALUES]...
  e.g. helm/restore.sh prod 2018-04-04T11_37
       helm/restore.sh -n backups staging latest --drop --target-secret scratch-mongo:MONGO_URI
env:   HELM, KUBECTL, HELM_NAMESPACE
USAGE
}

die() {
    printf 'restore.sh: error: %s\n' "$*" >&2
    exit 2
}

main() {
    if [[ ${1:-} == -h || ${1:-} == --help ]]; then
        usage
        exit 0
    fi
    local namespace=${HELM_NAMESPACE:-} positional=() drop=0 to_time="" target="" extra=()
    while (($#)); do
        case $1 in
            -n | --namespace)
                (($# >= 2)) || die "$1 needs a namespace"
                namespace=$2
                shift 2
                ;;
            --drop)
                drop=1
                shift
                ;;
            --to-time)
                (($# >= 2)) || die "--to-time needs a time (RFC 3339, e.g. 2018-04-04T11:50:00Z)"
                to_time=$2
                shift 2
                ;;
            --target-secret)
                (($# >= 2)) || die "--target-secret needs SECRET or SECRET:KEY"
                target=$2
                shift 2
                ;;
            -f | --values)
                (($# >= 2)) || die "$1 needs a values file"
                [[ -f $2 && -r $2 ]] || die "values file '$2' is not a readable file"
                extra+=(-f "$2")
                shift 2
                ;;
            -*)
                usage
                die "unknown option '$1'"
                ;;
            *)
                positional+=("$1")
                shift
                ;;
        esac
    done
    if ((${#positional[@]} != 2)); then
        usage
        die "expected STAGE and NAME, got ${#positional[@]} argument(s)"
    fi
    local stage=${positional[0]} name=${positional[1]}
    local known
    known="$(cd "$CONFIG_DIR" && for f in *.yaml; do printf '%s ' "${f%.yaml}"; done)"
    [[ $stage =~ ^[A-Za-z0-9_-]+$ && -f $CONFIG_DIR/$stage.yaml ]] \
        || die "stage '$stage' has no configuration $CONFIG_DIR/$stage.yaml: use one of: ${known% }"
    [[ $name == latest || $name =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}_[0-9]{2}(_[0-9]{2}(-[0-9]+)?)?$ ]] \
        || die "'$name' is not a backup name: give one such as 2018-04-04T11_37 (ingest-backup list shows them) or latest"
    if [[ -n $to_time ]]; then
        [[ $to_time =~ ^[0-9A-Za-z:.+-]+$ ]] || die "--to-time '$to_time' is not a time: give RFC 3339 (2018-04-04T11:50:00Z) or T.I"
    fi
    local secret_name="" secret_key=""
    if [[ -n $target ]]; then
        secret_name=${target%%:*}
        [[ $target == *:* ]] && secret_key=${target#*:}
        [[ $secret_name =~ ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ ]] \
            || die "--target-secret '$target': '$secret_name' is not a Secret name (lower-case letters, digits, '-' and '.')"
        if [[ $target == *:* ]]; then
            [[ $secret_key =~ ^[-._A-Za-z0-9]+$ ]] || die "--target-secret '$target': '$secret_key' is not a Secret key"
        fi
    fi
    local ns_args=()
    if [[ -n $namespace ]]; then
        [[ $namespace =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] \
            || die "namespace '$namespace' is not a Kubernetes namespace name (lower-case letters, digits and '-', at most 63)"
        ns_args=(--namespace "$namespace")
    fi
    command -v -- "$HELM" >/dev/null 2>&1 \
        || die "helm not found (HELM=$HELM): install Helm 3 (https://helm.sh/docs/intro/install/) or set HELM"
    command -v -- "$KUBECTL" >/dev/null 2>&1 \
        || die "kubectl not found (KUBECTL=$KUBECTL): install kubectl and point it at the cluster, or set KUBECTL"

    local sets=(--set restore.enabled=true --set-string "restore.backup=$name")
    ((drop)) && sets+=(--set restore.drop=true)
    [[ -n $to_time ]] && sets+=(--set-string "restore.toTime=$to_time")
    [[ -n $secret_name ]] && sets+=(--set-string "restore.targetSecret.name=$secret_name")
    [[ -n $secret_key ]] && sets+=(--set-string "restore.targetSecret.key=$secret_key")

    local tmp
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/ingest-backup-restore.XXXXXX")"
    # shellcheck disable=SC2064 # expand $tmp now: it is local to main
    trap "rm -rf -- '$tmp'" EXIT
    trap 'exit 130' INT TERM
    local job=$tmp/restore-job.yaml
    "$HELM" template "$RELEASE" "$CHART" -f "$CONFIG_DIR/$stage.yaml" "${extra[@]}" "${sets[@]}" \
        --show-only templates/restore-job.yaml "${ns_args[@]}" >"$job"
    printf 'restore.sh: restoring %s of stage %s%s%s\n' "$name" "$stage" "${namespace:+ in namespace $namespace}" \
        "$( ((drop)) && printf ', dropping each target collection first')" >&2
    local created
    created="$("$KUBECTL" "${ns_args[@]}" create -f "$job" -o name)"
    printf '%s\n' "$created"
    printf 'restore.sh: follow it with: kubectl%s logs -f %s\n' "${namespace:+ -n $namespace}" "$created" >&2
}

main "$@"
