#!/usr/bin/env bash
# Changes the schedule of a deployed ingest-backup, as the original scripts' reschedule did:
#
#   helm/reschedule.sh [-n NAMESPACE] '*/5 * * * * '
#
# patches `cronjob ingest-backup` with the new five-field cron schedule (surrounding
# blanks are dropped) or Kubernetes macro (@daily, ...), then moves `cronjob ingest-backup-verify` to run
# VERIFY_OFFSET_MINUTES (default 30, as the chart's verify.offsetMinutes) after it, by the
# chart's rule: the minute field must be one number; a carry into the hour needs an
# hour field of numbers (or "*" for an offset under an hour), and a carry past midnight
# needs "*" in day-of-month, month and day-of-week. When the schedule cannot be shifted
# (say */5 in the minute field) the verify CronJob keeps its schedule unless
# VERIFY_CRON_SCHEDULE gives one, and the script says so.
#
# The expression is checked before anything is patched: minute 0-59, hour 0-23,
# day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-6 or SUN-SAT (Kubernetes'
# parser has no 7), each a list of values, ranges and steps built from *, ",", "-" and
# "/"; or one of the macros @yearly, @annually, @monthly, @weekly, @daily, @midnight,
# @hourly (shifted as the schedule they stand for). The chart checks cronSchedule by the
# same rules (helm/ingest-backup/templates/_helpers.tpl). KUBECTL names the kubectl
# command (default: kubectl). The namespace is -n NAMESPACE, else HELM_NAMESPACE (as
# helm/setup.sh installs with), else the kube context's.
#
# A patch lasts until the next helm/setup.sh (helm upgrade), which applies cronSchedule
# from helm/config/$DEPLOYMENT_STAGE.yaml: change it there too to keep the schedule.
#
# Exit status: 0 patched; 2 bad input (nothing was patched); 1 kubectl failed.
set -euo pipefail

KUBECTL="${KUBECTL:-kubectl}"
BACKUP_CRONJOB=ingest-backup
VERIFY_CRONJOB=ingest-backup-verify

usage() {
    cat >&2 <<'USAGE'
usage: helm/reschedule.sh [-n NAMESPACE] '<minute> <hour> <day-of-month> <month> <day-of-week>'|@daily
  e.g. helm/reschedule.sh '0 0 * * *'      every day at midnight (UTC)
       helm/reschedule.sh '*/5 * * * *'    every five minutes
       helm/reschedule.sh -n backups @daily
env:   VERIFY_OFFSET_MINUTES (default 30), VERIFY_CRON_SCHEDULE, KUBECTL, HELM_NAMESPACE
USAGE
}

die() {
    printf 'reschedule.sh: error: %s\n' "$*" >&2
    exit 2
}

# Value of one token ($1: a number or a name) of a field into VALUE; names are given
# as the remaining arguments, the first one meaning $base.
# Returns 1 when the token is neither.
token_value() {
    local token=$1 base=$2 i
    shift 2
    if [[ $token =~ ^[0-9]{1,2}$ ]]; then
        VALUE=$((10#$token))
        return 0
    fi
    local upper=${token^^}
    for ((i = 1; i <= $#; i++)); do
        if [[ ${!i} == "$upper" ]]; then
            VALUE=$((base + i - 1))
            return 0
        fi
    done
    return 1
}

# Checks one cron field: check_field LABEL TEXT MIN MAX [NAMES...]; sets FIELD_ERROR.
check_field() {
    local label=$1 text=$2 min=$3 max=$4
    shift 4
    local names=("$@") items item range step lo hi
    FIELD_ERROR=""
    if [[ -z $text || $text == ,* || $text == *, || $text == *,,* ]]; then
        FIELD_ERROR="$label field '$text' has an empty list item"
        return 1
    fi
    if [[ ! $text =~ ^[0-9A-Za-z*,/-]+$ ]]; then
        FIELD_ERROR="$label field '$text' may only hold digits, names, '*', ',', '-' and '/'"
        return 1
    fi
    IFS=, read -r -a items <<<"$text"
    for item in "${items[@]}"; do
        range=$item
        if [[ $item == */* ]]; then
            range=${item%%/*}
            step=${item#*/}
            if [[ ! $step =~ ^[0-9]{1,2}$ ]] || ((10#$step < 1 || 10#$step > max)); then
                FIELD_ERROR="$label field '$text': step '$step' must be a number from 1 to $max"
                return 1
            fi
        fi
        [[ $range == "*" ]] && continue
        if [[ $range == *-* ]]; then
            lo=${range%%-*}
            hi=${range#*-}
        else
            lo=$range
            hi=$range
        fi
        local allowed="$min-$max"
        ((${#names[@]})) && allowed+=" or ${names[0]}-${names[-1]}"
        if ! token_value "$lo" "$min" "${names[@]}"; then
            FIELD_ERROR="$label field '$text': '$lo' is not a value of $allowed"
            return 1
        fi
        lo=$VALUE
        if ! token_value "$hi" "$min" "${names[@]}"; then
            FIELD_ERROR="$label field '$text': '$hi' is not a value of $allowed"
            return 1
        fi
        hi=$VALUE
        if ((lo < min || hi > max)); then
            FIELD_ERROR="$label field '$text': '$range' is outside $min-$max"
            return 1
        fi
        if ((lo > hi)); then
            FIELD_ERROR="$label field '$text': range '$range' runs backwards"
            return 1
        fi
    done
}

# Kubernetes' cron macros and the schedules they stand for.
declare -A MACROS=(
    [@yearly]="0 0 1 1 *" [@annually]="0 0 1 1 *" [@monthly]="0 0 1 * *" [@weekly]="0 0 * * 0"
    [@daily]="0 0 * * *" [@midnight]="0 0 * * *" [@hourly]="0 * * * *"
)

# Checks a whole expression ($2, named $1 in messages) and normalises it into CRON.
check_cron() {
    local what=$1 text=$2 fields
    if [[ $text == *$'\n'* || $text == *$'\r'* ]]; then
        die "$what must be one line"
    fi
    read -r -a fields <<<"$text"
    if ((${#fields[@]} >= 1)) && [[ ${fields[0]} == @* ]]; then
        if ((${#fields[@]} == 1)) && [[ -n ${MACROS[${fields[0]}]:-} ]]; then
            CRON=${fields[0]}
            return 0
        fi
        die "$what '$text': '${fields[*]}' is not one of Kubernetes' macros @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly (@every is not accepted): use one of them or five fields"
    fi
    if ((${#fields[@]} != 5)); then
        die "$what '$text' has ${#fields[@]} fields; a cron schedule has exactly five: minute hour day-of-month month day-of-week (e.g. '0 0 * * *'), or a macro such as @daily"
    fi
    check_field minute "${fields[0]}" 0 59 || die "$what '$text': $FIELD_ERROR"
    check_field hour "${fields[1]}" 0 23 || die "$what '$text': $FIELD_ERROR"
    check_field day-of-month "${fields[2]}" 1 31 || die "$what '$text': $FIELD_ERROR"
    check_field month "${fields[3]}" 1 12 JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC \
        || die "$what '$text': $FIELD_ERROR"
    if [[ ${fields[4]} =~ (^|[,-])7($|[,/-]) ]]; then
        die "$what '$text': day-of-week 7 is not accepted by Kubernetes' cron parser: write Sunday as 0 or SUN"
    fi
    check_field day-of-week "${fields[4]}" 0 6 SUN MON TUE WED THU FRI SAT || die "$what '$text': $FIELD_ERROR"
    CRON="${fields[*]}"
}

# Shifts the valid, normalised schedule $1 by $2 minutes (the chart's rule, see
# helm/ingest-backup/templates/_helpers.tpl). Sets SHIFTED or SHIFT_ERROR.
shift_schedule() {
    local fields offset=$2 minute total carry hour hours=() h wrapped=0 daily=0 rest schedule=$1
    [[ -n ${MACROS[$schedule]:-} ]] && schedule=${MACROS[$schedule]}
    read -r -a fields <<<"$schedule"
    SHIFTED=""
    SHIFT_ERROR=""
    if [[ ! ${fields[0]} =~ ^[0-9]+$ ]]; then
        SHIFT_ERROR="its minute field is not a single number"
        return 1
    fi
    total=$((10#${fields[0]} + offset))
    minute=$((total % 60))
    carry=$((total / 60))
    hour=${fields[1]}
    rest="${fields[2]} ${fields[3]} ${fields[4]}"
    [[ $rest == "* * *" ]] && daily=1
    if ((carry == 0)); then
        SHIFTED="$minute $hour $rest"
    elif [[ $hour == "*" ]]; then
        if ((daily && offset < 60)); then
            SHIFTED="$minute * * * *"
        else
            SHIFT_ERROR="the shift carries into an hourly schedule restricted to some days"
            return 1
        fi
    elif [[ $hour =~ ^[0-9]+(,[0-9]+)*$ ]]; then
        local IFS=,
        for h in $hour; do
            h=$((10#$h + carry))
            ((h >= 24)) && wrapped=1
            hours+=("$((h % 24))")
        done
        if ((wrapped && !daily)); then
            SHIFT_ERROR="the shift crosses midnight and day-of-month, month or day-of-week is restricted"
            return 1
        fi
        SHIFTED="$minute ${hours[*]} $rest"
    else
        SHIFT_ERROR="its hour field is neither * nor a list of numbers and the shift carries into it"
        return 1
    fi
}

NAMESPACE_ARGS=()

patch() {
    local cronjob=$1 schedule=$2
    "$KUBECTL" "${NAMESPACE_ARGS[@]}" patch cronjob "$cronjob" -p "{\"spec\":{\"schedule\":\"$schedule\"}}"
}

main() {
    if [[ ${1:-} == -h || ${1:-} == --help ]]; then
        usage
        exit 0
    fi
    local namespace=${HELM_NAMESPACE:-}
    if [[ ${1:-} == -n || ${1:-} == --namespace ]]; then
        (($# >= 2)) || die "$1 needs a namespace"
        namespace=$2
        shift 2
    fi
    if [[ -n $namespace ]]; then
        [[ $namespace =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] \
            || die "namespace '$namespace' is not a Kubernetes namespace name (lower-case letters, digits and '-', at most 63)"
        NAMESPACE_ARGS=(--namespace "$namespace")
    fi
    if (($# != 1)); then
        usage
        die "expected one argument, the cron schedule in quotes, got $#"
    fi
    check_cron "schedule" "$1"
    local schedule=$CRON

    local offset=${VERIFY_OFFSET_MINUTES:-30}
    if [[ ! $offset =~ ^[0-9]{1,4}$ ]] || ((10#$offset < 1 || 10#$offset > 1439)); then
        die "VERIFY_OFFSET_MINUTES '$offset' must be a whole number of minutes from 1 to 1439"
    fi
    offset=$((10#$offset))

    local verify="" note=""
    if [[ -n ${VERIFY_CRON_SCHEDULE:-} ]]; then
        check_cron "VERIFY_CRON_SCHEDULE" "$VERIFY_CRON_SCHEDULE"
        verify=$CRON
    elif shift_schedule "$schedule" "$offset"; then
        verify=$SHIFTED
    else
        note="cannot move $VERIFY_CRONJOB by $offset minutes: schedule '$schedule': $SHIFT_ERROR. It keeps its current schedule; give it one with VERIFY_CRON_SCHEDULE='<cron>' $0 '$schedule', and set verify.cronSchedule in helm/config/\$DEPLOYMENT_STAGE.yaml so that the next helm/setup.sh keeps it"
    fi

    command -v -- "$KUBECTL" >/dev/null 2>&1 \
        || die "kubectl not found (KUBECTL=$KUBECTL): install kubectl and point it at the cluster, or set KUBECTL"

    patch "$BACKUP_CRONJOB" "$schedule" \
        || { printf 'reschedule.sh: error: kubectl could not patch cronjob %s; nothing was changed\n' "$BACKUP_CRONJOB" >&2; exit 1; }
    printf 'reschedule.sh: %s now runs on "%s"\n' "$BACKUP_CRONJOB" "$schedule" >&2
    if [[ -n $verify ]]; then
        patch "$VERIFY_CRONJOB" "$verify" \
            || { printf 'reschedule.sh: error: %s was rescheduled but kubectl could not patch cronjob %s (is verify.enabled false?)\n' "$BACKUP_CRONJOB" "$VERIFY_CRONJOB" >&2; exit 1; }
        printf 'reschedule.sh: %s now runs on "%s"\n' "$VERIFY_CRONJOB" "$verify" >&2
    else
        printf 'reschedule.sh: warning: %s\n' "$note" >&2
    fi
}

main "$@"
