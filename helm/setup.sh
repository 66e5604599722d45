#!/usr/bin/env bash
# Installs or upgrades ingest-backup on the current Kubernetes context with Helm.
#
#   DEPLOYMENT_STAGE=prod helm/setup.sh /path/to/aws_access_credentials.csv role_ARN slack_webhook_url
#   DEPLOYMENT_STAGE=prod helm/setup.sh --irsa role_ARN [slack_webhook_url]
#   DEPLOYMENT_STAGE=prod helm/setup.sh --existing-secret SECRET_NAME [role_ARN]
#
# The first form is the original scripts': access keys from the CSV, which assume the
# role. --irsa uses no keys: the role ARN becomes the ServiceAccount's
# eks.amazonaws.com/role-arn annotation (IRSA; aws.roleArn stays empty, as IRSA needs).
# --existing-secret reads keys and webhook URLs from a Secret you manage (keys named as
# in values.yaml secrets.keys); the role ARN, when given, is assumed with them.
# HEARTBEAT_URL in the environment (never on the command line) becomes heartbeat.url.
#
# - DEPLOYMENT_STAGE picks helm/config/$DEPLOYMENT_STAGE.yaml (schedule, bucket, prefix).
# - The CSV is the one the AWS console downloads: either the access-key file
#   (`Access key ID,Secret access key`) or the user-credentials file (`User name,Password,
#   Access key ID,Secret access key,Console login link`); any column order, a UTF-8 BOM
#   and CRLF line ends are fine. It must hold one row of keys.
# - role_ARN is the role the keys assume (arn:aws:iam::123456789012:role/NAME; aws-cn and
#   aws-us-gov too); slack_webhook_url is any https:// webhook URL (Slack's
#   https://hooks.slack.com/services/..., or a Slack-compatible receiver).
#
# The keys and the webhook URL go to Helm in a values file (mode 600, in a private
# temporary directory removed on exit), never on a command line, and are never printed.
# The chart renders them into a Secret only. Running it again upgrades the release in
# place. HELM and KUBECTL name the helm and kubectl commands (default: helm, kubectl).
#
# Exit status: 0 installed; 2 bad input (nothing was run); otherwise helm's or kubectl's.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHART="$HERE/ingest-backup"
CONFIG_DIR="$HERE/config"
RELEASE=ingest-backup
HELM="${HELM:-helm}"
KUBECTL="${KUBECTL:-kubectl}"

usage() {
    cat >&2 <<'USAGE'
usage: DEPLOYMENT_STAGE=<stage> helm/setup.sh /path/to/aws_access_credentials.csv role_ARN slack_webhook_url
       DEPLOYMENT_STAGE=<stage> helm/setup.sh --irsa role_ARN [slack_webhook_url]
       DEPLOYMENT_STAGE=<stage> helm/setup.sh --existing-secret SECRET_NAME [role_ARN]
env:   HEARTBEAT_URL (optional), HELM, KUBECTL, HELM_NAMESPACE
USAGE
}

# Bad input: says what is wrong, exits 2. Never given a secret.
die() {
    printf 'setup.sh: error: %s\n' "$*" >&2
    exit 2
}

# Splits one CSV line (RFC 4180 quoting: "a,b" and "" inside quotes) into CSV_FIELDS.
# Pure bash: the line may hold a key, so it is never handed to another process.
split_csv() {
    local line=$1 i=0 c field="" quoted=0 len=${#1}
    CSV_FIELDS=()
    while ((i < len)); do
        c=${line:i:1}
        if ((quoted)); then
            if [[ $c == '"' ]]; then
                if [[ ${line:i+1:1} == '"' ]]; then
                    field+='"'
                    i=$((i + 1))
                else
                    quoted=0
                fi
            else
                field+=$c
            fi
        else
            case $c in
                '"') quoted=1 ;;
                ,) CSV_FIELDS+=("$field"); field="" ;;
                *) field+=$c ;;
            esac
        fi
        i=$((i + 1))
    done
    CSV_FIELDS+=("$field")
    ((quoted == 0))
}

# Trims surrounding blanks into TRIMMED.
trim() {
    local s=$1
    s=${s#"${s%%[![:space:]]*}"}
    s=${s%"${s##*[![:space:]]}"}
    TRIMMED=$s
}

# Reads the access key id and secret access key from the CSV at $1 into ACCESS_KEY_ID
# and SECRET_ACCESS_KEY.
read_credentials_csv() {
    local file=$1 line n=0 rows=() header=() i name key_col=-1 secret_col=-1
    [[ -e $file ]] || die "credentials CSV $(shown "$file") does not exist: download it from the AWS console (IAM > Users > Security credentials > Create access key)"
    [[ -f $file && -r $file ]] || die "credentials CSV $(shown "$file") is not a readable file"
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        if ((n == 0)); then
            line=${line#$'\xef\xbb\xbf'}
        fi
        n=$((n + 1))
        trim "${line//,/}"
        [[ -n $TRIMMED ]] || continue
        rows+=("$line")
    done <"$file"
    ((${#rows[@]} > 0)) || die "credentials CSV '$file' is empty"

    split_csv "${rows[0]}" || die "credentials CSV '$file': unterminated quote in the header line"
    header=("${CSV_FIELDS[@]}")
    for i in "${!header[@]}"; do
        trim "${header[i]}"
        name=${TRIMMED,,}
        name=${name//[[:space:]]/ }
        case $name in
            "access key id") key_col=$i ;;
            "secret access key") secret_col=$i ;;
        esac
    done
    ((key_col >= 0 && secret_col >= 0)) \
        || die "credentials CSV '$file' has no 'Access key ID' and 'Secret access key' columns in its first line: use the CSV the AWS console downloads for an access key"
    ((${#rows[@]} >= 2)) || die "credentials CSV '$file' has a header but no row of keys"
    ((${#rows[@]} == 2)) || die "credentials CSV '$file' holds $((${#rows[@]} - 1)) rows of keys: keep only the one to deploy with"

    split_csv "${rows[1]}" || die "credentials CSV '$file': unterminated quote in line 2"
    ((${#CSV_FIELDS[@]} > key_col && ${#CSV_FIELDS[@]} > secret_col)) \
        || die "credentials CSV '$file': line 2 has ${#CSV_FIELDS[@]} columns, fewer than its header"
    trim "${CSV_FIELDS[key_col]}"
    ACCESS_KEY_ID=$TRIMMED
    trim "${CSV_FIELDS[secret_col]}"
    SECRET_ACCESS_KEY=$TRIMMED
    [[ $ACCESS_KEY_ID =~ ^[A-Z0-9]{16,128}$ ]] \
        || die "credentials CSV '$file': the 'Access key ID' value is not an AWS access key id (16 or more capital letters and digits, e.g. AKIA...)"
    [[ $SECRET_ACCESS_KEY =~ ^[A-Za-z0-9/+]{40}$ ]] \
        || die "credentials CSV '$file': the 'Secret access key' value is not an AWS secret access key (40 characters of A-Z, a-z, 0-9, / and +)"
}

# How an argument is shown in a message: quoted, unless it looks like a URL (the
# webhook given in the wrong place), which is never printed.
shown() {
    if [[ $1 == *://* || $1 == *hooks.slack* ]]; then
        printf '(argument withheld: it looks like a URL)'
    else
        printf "'%s'" "$1"
    fi
}

# Single-quoted YAML scalar of $1 into QUOTED.
yaml_quote() {
    local q="'"
    QUOTED="'${1//$q/$q$q}'"
}

check_role_arn() {
    [[ $1 =~ ^arn:(aws|aws-cn|aws-us-gov):iam::[0-9]{12}:role/([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,64}$ ]] \
        || die "role ARN $(shown "$1") is not an IAM role ARN: expected arn:aws:iam::<12-digit account>:role/<name>"
}

check_webhook() {
    [[ $1 =~ ^https://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?/[^[:space:]]*$ ]] \
        || die "the Slack webhook URL ($2) is not an https:// URL with a host: copy it from the Slack app's Incoming Webhooks page (or your Slack-compatible receiver)"
}

main() {
    if [[ ${1:-} == -h || ${1:-} == --help ]]; then
        usage
        exit 0
    fi
    local mode=keys csv="" role_arn="" webhook="" existing=""
    case ${1:-} in
        --irsa)
            mode=irsa
            (($# == 2 || $# == 3)) || { usage; die "--irsa takes the role ARN and, optionally, the Slack webhook URL"; }
            role_arn=$2
            webhook=${3:-}
            ;;
        --existing-secret)
            mode=existing
            (($# == 2 || $# == 3)) || { usage; die "--existing-secret takes the Secret's name and, optionally, the role ARN"; }
            existing=$2
            role_arn=${3:-}
            ;;
        -*)
            usage
            die "unknown option '$1'"
            ;;
        *)
            if (($# != 3)); then
                usage
                die "expected 3 arguments (credentials CSV, role ARN, Slack webhook URL), got $#"
            fi
            csv=$1 role_arn=$2 webhook=$3
            ;;
    esac

    local stage=${DEPLOYMENT_STAGE:-}
    local known
    known="$(cd "$CONFIG_DIR" && for f in *.yaml; do printf '%s ' "${f%.yaml}"; done)"
    [[ -n $stage ]] || die "DEPLOYMENT_STAGE is not set: set it to one of: ${known% }"
    [[ $stage =~ ^[A-Za-z0-9_-]+$ && -f $CONFIG_DIR/$stage.yaml ]] \
        || die "DEPLOYMENT_STAGE '$stage' has no configuration $CONFIG_DIR/$stage.yaml: use one of: ${known% }"
    local config=$CONFIG_DIR/$stage.yaml

    case $mode in
        keys)
            read_credentials_csv "$csv"
            check_role_arn "$role_arn"
            check_webhook "$webhook" "argument 3"
            ;;
        irsa)
            check_role_arn "$role_arn"
            [[ -z $webhook ]] || check_webhook "$webhook" "argument 3"
            ;;
        existing)
            [[ $existing =~ ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ ]] \
                || die "Secret name $(shown "$existing") is not a Kubernetes object name (lower-case letters, digits, '-' and '.')"
            [[ -z $role_arn ]] || check_role_arn "$role_arn"
            ;;
    esac
    local heartbeat=${HEARTBEAT_URL:-}
    if [[ -n $heartbeat ]]; then
        [[ $mode != existing ]] || die "HEARTBEAT_URL is set with --existing-secret: put the URL into that Secret (key HEARTBEAT_URL) instead"
        [[ $heartbeat =~ ^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[^[:space:]]*)?$ ]] \
            || die "HEARTBEAT_URL is not an http(s):// URL with a host (the value is not shown)"
    fi

    command -v -- "$HELM" >/dev/null 2>&1 \
        || die "helm not found (HELM=$HELM): install Helm 3 (https://helm.sh/docs/intro/install/) or set HELM"
    command -v -- "$KUBECTL" >/dev/null 2>&1 \
        || die "kubectl not found (KUBECTL=$KUBECTL): install kubectl and point it at the cluster, or set KUBECTL"

    local context
    if ! context="$("$KUBECTL" config current-context)"; then
        printf 'setup.sh: error: kubectl has no current context: select the cluster with kubectl config use-context\n' >&2
        exit 1
    fi

    local tmp
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/ingest-backup-setup.XXXXXX")"
    # shellcheck disable=SC2064 # expand $tmp now: it is local to main
    trap "rm -rf -- '$tmp'" EXIT
    trap 'exit 130' INT TERM
    chmod 700 "$tmp"
    local values=$tmp/secret-values.yaml
    (umask 077 && : >"$values")
    chmod 600 "$values"
    {
        printf '# Written by helm/setup.sh for one helm run; deleted when it exits.\n'
        case $mode in
            keys)
                yaml_quote "$role_arn"
                printf 'aws:\n  roleArn: %s\n' "$QUOTED"
                printf 'secrets:\n'
                yaml_quote "$ACCESS_KEY_ID"
                printf '  awsAccessKeyId: %s\n' "$QUOTED"
                yaml_quote "$SECRET_ACCESS_KEY"
                printf '  awsSecretAccessKey: %s\n' "$QUOTED"
                yaml_quote "$webhook"
                printf '  slackWebhookUrl: %s\n' "$QUOTED"
                ;;
            irsa)
                yaml_quote "$role_arn"
                printf 'serviceAccount:\n  annotations:\n    eks.amazonaws.com/role-arn: %s\n' "$QUOTED"
                if [[ -n $webhook ]]; then
                    yaml_quote "$webhook"
                    printf 'secrets:\n  slackWebhookUrl: %s\n' "$QUOTED"
                fi
                ;;
            existing)
                if [[ -n $role_arn ]]; then
                    yaml_quote "$role_arn"
                    printf 'aws:\n  roleArn: %s\n' "$QUOTED"
                fi
                yaml_quote "$existing"
                printf 'secrets:\n  existingSecret: %s\n' "$QUOTED"
                ;;
        esac
        if [[ -n $heartbeat ]]; then
            yaml_quote "$heartbeat"
            printf 'heartbeat:\n  url: %s\n' "$QUOTED"
        fi
    } >"$values"

    printf 'setup.sh: installing %s for stage %s (%s) into kube context %s\n' \
        "$RELEASE" "$stage" "$config" "${context:-(unknown)}" >&2
    "$HELM" upgrade --install "$RELEASE" "$CHART" -f "$config" -f "$values"
    printf 'setup.sh: done: CronJobs %s and %s-verify are scheduled (kubectl get cronjobs)\n' "$RELEASE" "$RELEASE" >&2
}

main "$@"
