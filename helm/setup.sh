#!/usr/bin/env bash
# Installs or upgrades ingest-backup on the current Kubernetes context with Helm.
#
#   DEPLOYMENT_STAGE=prod helm/setup.sh /path/to/aws_access_credentials.csv role_ARN slack_webhook_url
#
# - DEPLOYMENT_STAGE picks helm/config/$DEPLOYMENT_STAGE.yaml (schedule, bucket, prefix).
# - The CSV is the one the AWS console downloads: either the access-key file
#   (`Access key ID,Secret access key`) or the user-credentials file (`User name,Password,
#   Access key ID,Secret access key,Console login link`); any column order, a UTF-8 BOM
#   and CRLF line ends are fine. It must hold one row of keys.
# - role_ARN is the role the keys assume (arn:aws:iam::123456789012:role/NAME; aws-cn and
#   aws-us-gov too); slack_webhook_url is https://hooks.slack.com/services/....
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

main() {
    if [[ ${1:-} == -h || ${1:-} == --help ]]; then
        usage
        exit 0
    fi
    if (($# != 3)); then
        usage
        die "expected 3 arguments (credentials CSV, role ARN, Slack webhook URL), got $#"
    fi
    local csv=$1 role_arn=$2 webhook=$3

    local stage=${DEPLOYMENT_STAGE:-}
    local known
    known="$(cd "$CONFIG_DIR" && for f in *.yaml; do printf '%s ' "${f%.yaml}"; done)"
    [[ -n $stage ]] || die "DEPLOYMENT_STAGE is not set: set it to one of: ${known% }"
    [[ $stage =~ ^[A-Za-z0-9_-]+$ && -f $CONFIG_DIR/$stage.yaml ]] \
        || die "DEPLOYMENT_STAGE '$stage' has no configuration $CONFIG_DIR/$stage.yaml: use one of: ${known% }"
    local config=$CONFIG_DIR/$stage.yaml

    read_credentials_csv "$csv"

    [[ $role_arn =~ ^arn:(aws|aws-cn|aws-us-gov):iam::[0-9]{12}:role/([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,64}$ ]] \
        || die "role ARN $(shown "$role_arn") is not an IAM role ARN: expected arn:aws:iam::<12-digit account>:role/<name>"
    [[ $webhook =~ ^https://hooks\.slack\.com/services/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+$ ]] \
        || die "the Slack webhook URL (argument 3) is not of the form https://hooks.slack.com/services/T.../B.../...: copy it from the Slack app's Incoming Webhooks page"

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
        yaml_quote "$role_arn"
        printf 'aws:\n  roleArn: %s\n' "$QUOTED"
        printf 'secrets:\n'
        yaml_quote "$ACCESS_KEY_ID"
        printf '  awsAccessKeyId: %s\n' "$QUOTED"
        yaml_quote "$SECRET_ACCESS_KEY"
        printf '  awsSecretAccessKey: %s\n' "$QUOTED"
        yaml_quote "$webhook"
        printf '  slackWebhookUrl: %s\n' "$QUOTED"
    } >"$values"

    printf 'setup.sh: installing %s for stage %s (%s) into kube context %s\n' \
        "$RELEASE" "$stage" "$config" "${context:-(unknown)}" >&2
    "$HELM" upgrade --install "$RELEASE" "$CHART" -f "$config" -f "$values"
    printf 'setup.sh: done: CronJobs %s and %s-verify are scheduled (kubectl get cronjobs)\n' "$RELEASE" "$RELEASE" >&2
}

main "$@"
