{{/*
Names. The CronJobs are called ingest-backup and ingest-backup-verify whatever the
release is called: the original scripts' reschedule (and ours) patch `cronjob ingest-backup`.
*/}}
{{- define "ingest-backup.fullname" -}}
{{- default "ingest-backup" .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "ingest-backup.labels" -}}
app.kubernetes.io/name: ingest-backup
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The labels a Deployment and its Service select pods by (never the version): (dict "ctx" $ "component" C). */}}
{{- define "ingest-backup.selectorLabels" -}}
app.kubernetes.io/name: ingest-backup
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ingest-backup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ingest-backup.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The secret values given in values, by field (JSON): secrets.*, heartbeat.url and, with
drill.enabled, drill.scratchUri.value (drillUri: only the drill Job reads it, so it is
not among secretFields).
*/}}
{{- define "ingest-backup.secretValues" -}}
{{- $s := .Values.secrets -}}
{{- $drillUri := ternary .Values.drill.scratchUri.value "" (eq (toString .Values.drill.enabled) "true") -}}
{{- dict "awsAccessKeyId" $s.awsAccessKeyId "awsSecretAccessKey" $s.awsSecretAccessKey "slackWebhookUrl" $s.slackWebhookUrl "alertWebhookUrl" $s.alertWebhookUrl "heartbeatUrl" .Values.heartbeat.url "drillUri" $drillUri | toJson -}}
{{- end -}}

{{/* The secret fields every Job may read, in the order they are rendered. */}}
{{- define "ingest-backup.secretFields" -}}
awsAccessKeyId awsSecretAccessKey slackWebhookUrl alertWebhookUrl heartbeatUrl
{{- end -}}

{{/* True ("true") when the chart itself renders a Secret. */}}
{{- define "ingest-backup.createSecret" -}}
{{- $values := include "ingest-backup.secretValues" . | fromJson -}}
{{- $any := false -}}
{{- range $field, $value := $values -}}{{- if $value -}}{{- $any = true -}}{{- end -}}{{- end -}}
{{- if and (not .Values.secrets.existingSecret) $any -}}
true
{{- end -}}
{{- end -}}

{{/* The Secret the pods read: an existing one, the chart's own, or none (IRSA). */}}
{{- define "ingest-backup.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else if include "ingest-backup.createSecret" . -}}
{{- include "ingest-backup.fullname" . -}}
{{- end -}}
{{- end -}}

{{/*
The store's scheme: s3, gs or az from store.url; "" when store.url is empty (the S3
bucket from s3.bucket and backupDir, S3_BUCKET and BACKUP_DIR); "other" for anything else.
*/}}
{{- define "ingest-backup.storeScheme" -}}
{{- $url := trim (toString (.Values.store).url) -}}
{{- if not $url -}}
{{- else if hasPrefix "s3://" $url -}}
s3
{{- else if hasPrefix "gs://" $url -}}
gs
{{- else if hasPrefix "az://" $url -}}
az
{{- else -}}
other
{{- end -}}
{{- end -}}

{{/* True ("true") when the store is an S3 bucket: store.url s3://..., or none (s3.bucket). */}}
{{- define "ingest-backup.s3Store" -}}
{{- if has (include "ingest-backup.storeScheme" .) (list "" "s3") -}}
true
{{- end -}}
{{- end -}}

{{/*
Shifts a five-field cron schedule by a number of minutes: the rule helm/reschedule.sh
applies too. Returns "ok:<schedule>" or "err:<reason>".
- The minute field must be one number; the minute moves by offset mod 60 and the rest
  carries into the hour.
- Without a carry every other field stays as written.
- With a carry the hour field must be a list of numbers (each moves by the carry) or
  "*" (offset under an hour); if that crosses midnight, day-of-month, month and
  day-of-week must all be "*" (the verify run then falls on the next day, which is
  every day anyway).
*/}}
{{- define "ingest-backup.shiftSchedule" -}}
{{- $fields := splitList " " (regexReplaceAll "\\s+" (trim .schedule) " ") -}}
{{- $off := int .offset -}}
{{- if ne (len $fields) 5 -}}
err:it does not have exactly five fields
{{- else if not (regexMatch "^[0-9]+$" (index $fields 0)) -}}
err:its minute field is not a single number
{{- else if gt (atoi (index $fields 0)) 59 -}}
err:its minute is out of range (0-59)
{{- else -}}
{{- $total := add (atoi (index $fields 0)) $off -}}
{{- $minute := mod $total 60 -}}
{{- $carry := div $total 60 -}}
{{- $hour := index $fields 1 -}}
{{- $rest := join " " (slice $fields 2) -}}
{{- $daily := and (eq (index $fields 2) "*") (eq (index $fields 3) "*") (eq (index $fields 4) "*") -}}
{{- if eq (int $carry) 0 -}}
ok:{{ $minute }} {{ $hour }} {{ $rest }}
{{- else if eq $hour "*" -}}
{{- if and $daily (lt $off 60) -}}
ok:{{ $minute }} * * * *
{{- else -}}
err:the shift carries into an hourly schedule restricted to some days
{{- end -}}
{{- else if regexMatch "^[0-9]+(,[0-9]+)*$" $hour -}}
{{- $hours := list -}}
{{- $wrapped := false -}}
{{- $bad := false -}}
{{- range splitList "," $hour -}}
{{- if gt (atoi .) 23 -}}{{- $bad = true -}}{{- end -}}
{{- $h := add (atoi .) $carry -}}
{{- if ge (int $h) 24 -}}{{- $wrapped = true -}}{{- end -}}
{{- $hours = append $hours (mod $h 24) -}}
{{- end -}}
{{- if $bad -}}
err:its hour is out of range (0-23)
{{- else if and $wrapped (not $daily) -}}
err:the shift crosses midnight and day-of-month, month or day-of-week is restricted
{{- else -}}
ok:{{ $minute }} {{ join "," $hours }} {{ $rest }}
{{- end -}}
{{- else -}}
err:its hour field is neither * nor a list of numbers and the shift carries into it
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Cron checks: the rules helm/reschedule.sh applies, message for message (the tests run
one table of expressions through both). Accepted: five fields (minute 0-59, hour 0-23,
day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-6 or SUN-SAT; lists, ranges and
steps of those) or one of Kubernetes' macros (@yearly, @annually, @monthly, @weekly,
@daily, @midnight, @hourly). Refused: anything else Kubernetes' parser refuses
(day-of-week 7, six fields, @every, ...), and "?".
*/}}
{{- define "ingest-backup.cronMacros" -}}
{{- dict "@yearly" "0 0 1 1 *" "@annually" "0 0 1 1 *" "@monthly" "0 0 1 * *" "@weekly" "0 0 * * 0" "@daily" "0 0 * * *" "@midnight" "0 0 * * *" "@hourly" "0 * * * *" | toJson -}}
{{- end -}}

{{/* The value of one token of a field, or "x": (dict "token" T "min" N "names" LIST). */}}
{{- define "ingest-backup.cronToken" -}}
{{- $token := .token -}}
{{- $value := "x" -}}
{{- if regexMatch "^[0-9]{1,2}$" $token -}}
{{- $value = toString (atoi $token) -}}
{{- else -}}
{{- range $i, $name := .names -}}
{{- if eq $name (upper $token) -}}{{- $value = toString (add $.min $i) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $value -}}
{{- end -}}

{{/* "" or what is wrong with one field: (dict "label" L "text" T "min" N "max" M "names" LIST). */}}
{{- define "ingest-backup.cronFieldError" -}}
{{- $label := .label -}}
{{- $text := .text -}}
{{- $min := int .min -}}
{{- $max := int .max -}}
{{- $names := .names -}}
{{- $err := "" -}}
{{- if or (eq $text "") (hasPrefix "," $text) (hasSuffix "," $text) (contains ",," $text) -}}
{{- $err = printf "%s field '%s' has an empty list item" $label $text -}}
{{- else if not (regexMatch "^[0-9A-Za-z*,/-]+$" $text) -}}
{{- $err = printf "%s field '%s' may only hold digits, names, '*', ',', '-' and '/'" $label $text -}}
{{- else -}}
{{- range $item := splitList "," $text -}}
{{- if not $err -}}
{{- $range := $item -}}
{{- if contains "/" $item -}}
{{- $range = regexReplaceAll "/.*$" $item "" -}}
{{- $step := regexReplaceAll "^[^/]*/" $item "" -}}
{{- if or (not (regexMatch "^[0-9]{1,2}$" $step)) (lt (atoi $step) 1) (gt (atoi $step) $max) -}}
{{- $err = printf "%s field '%s': step '%s' must be a number from 1 to %d" $label $text $step $max -}}
{{- end -}}
{{- end -}}
{{- if and (not $err) (ne $range "*") -}}
{{- $lo := $range -}}
{{- $hi := $range -}}
{{- if contains "-" $range -}}
{{- $lo = regexReplaceAll "-.*$" $range "" -}}
{{- $hi = regexReplaceAll "^[^-]*-" $range "" -}}
{{- end -}}
{{- $allowed := printf "%d-%d" $min $max -}}
{{- if $names -}}{{- $allowed = printf "%s or %s-%s" $allowed (first $names) (last $names) -}}{{- end -}}
{{- $lov := include "ingest-backup.cronToken" (dict "token" $lo "min" $min "names" $names) -}}
{{- $hiv := include "ingest-backup.cronToken" (dict "token" $hi "min" $min "names" $names) -}}
{{- if eq $lov "x" -}}
{{- $err = printf "%s field '%s': '%s' is not a value of %s" $label $text $lo $allowed -}}
{{- else if eq $hiv "x" -}}
{{- $err = printf "%s field '%s': '%s' is not a value of %s" $label $text $hi $allowed -}}
{{- else if or (lt (atoi $lov) $min) (gt (atoi $hiv) $max) -}}
{{- $err = printf "%s field '%s': '%s' is outside %d-%d" $label $text $range $min $max -}}
{{- else if gt (atoi $lov) (atoi $hiv) -}}
{{- $err = printf "%s field '%s': range '%s' runs backwards" $label $text $range -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $err -}}
{{- end -}}

{{/* "ok:<normalised>" or "err:<reason>" for a cron expression: (dict "what" NAME "text" TEXT). */}}
{{- define "ingest-backup.checkCron" -}}
{{- $what := .what -}}
{{- $raw := toString .text -}}
{{- $text := regexReplaceAll "\\s+" (trim $raw) " " -}}
{{- $macros := include "ingest-backup.cronMacros" . | fromJson -}}
{{- $fields := splitList " " $text -}}
{{- if or (contains "\n" (trim $raw)) (contains "\r" (trim $raw)) -}}
err:{{ $what }} must be one line
{{- else if hasPrefix "@" $text -}}
{{- if hasKey $macros $text -}}
ok:{{ $text }}
{{- else -}}
err:{{ $what }} '{{ $raw }}': '{{ $text }}' is not one of Kubernetes' macros @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly (@every is not accepted): use one of them or five fields
{{- end -}}
{{- else if or (eq $text "") (ne (len $fields) 5) -}}
err:{{ $what }} '{{ $raw }}' has {{ if eq $text "" }}0{{ else }}{{ len $fields }}{{ end }} fields; a cron schedule has exactly five: minute hour day-of-month month day-of-week (e.g. '0 0 * * *'), or a macro such as @daily
{{- else -}}
{{- $months := list "JAN" "FEB" "MAR" "APR" "MAY" "JUN" "JUL" "AUG" "SEP" "OCT" "NOV" "DEC" -}}
{{- $days := list "SUN" "MON" "TUE" "WED" "THU" "FRI" "SAT" -}}
{{- $err := include "ingest-backup.cronFieldError" (dict "label" "minute" "text" (index $fields 0) "min" 0 "max" 59 "names" list) -}}
{{- if not $err -}}{{- $err = include "ingest-backup.cronFieldError" (dict "label" "hour" "text" (index $fields 1) "min" 0 "max" 23 "names" list) -}}{{- end -}}
{{- if not $err -}}{{- $err = include "ingest-backup.cronFieldError" (dict "label" "day-of-month" "text" (index $fields 2) "min" 1 "max" 31 "names" list) -}}{{- end -}}
{{- if not $err -}}{{- $err = include "ingest-backup.cronFieldError" (dict "label" "month" "text" (index $fields 3) "min" 1 "max" 12 "names" $months) -}}{{- end -}}
{{- if and (not $err) (regexMatch "(^|[,-])7($|[,/-])" (index $fields 4)) -}}
{{- $err = "day-of-week 7 is not accepted by Kubernetes' cron parser: write Sunday as 0 or SUN" -}}
{{- end -}}
{{- if not $err -}}{{- $err = include "ingest-backup.cronFieldError" (dict "label" "day-of-week" "text" (index $fields 4) "min" 0 "max" 6 "names" $days) -}}{{- end -}}
{{- if $err -}}
err:{{ $what }} '{{ $raw }}': {{ $err }}
{{- else -}}
ok:{{ $text }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The backup schedule, checked. */}}
{{- define "ingest-backup.backupSchedule" -}}
{{- $r := include "ingest-backup.checkCron" (dict "what" "cronSchedule" "text" .Values.cronSchedule) -}}
{{- if hasPrefix "err:" $r -}}
{{- fail (trimPrefix "err:" $r) -}}
{{- end -}}
{{- trimPrefix "ok:" $r -}}
{{- end -}}

{{/* The point-in-time slice schedule (pitr.cronSchedule), checked like the backup's. */}}
{{- define "ingest-backup.pitrSchedule" -}}
{{- $r := include "ingest-backup.checkCron" (dict "what" "pitr.cronSchedule" "text" .Values.pitr.cronSchedule) -}}
{{- if hasPrefix "err:" $r -}}
{{- fail (trimPrefix "err:" $r) -}}
{{- end -}}
{{- trimPrefix "ok:" $r -}}
{{- end -}}

{{/* The restore drill's schedule (drill.cronSchedule), checked like the backup's. */}}
{{- define "ingest-backup.drillSchedule" -}}
{{- $r := include "ingest-backup.checkCron" (dict "what" "drill.cronSchedule" "text" .Values.drill.cronSchedule) -}}
{{- if hasPrefix "err:" $r -}}
{{- fail (trimPrefix "err:" $r) -}}
{{- end -}}
{{- trimPrefix "ok:" $r -}}
{{- end -}}

{{/*
The label matchers of the exporter's series in the alerts: monitoring.prometheusRule.exporterSelector,
else those the chart's ServiceMonitor gives them (the release's namespace and the Service).
*/}}
{{- define "ingest-backup.exporterSelector" -}}
{{- with trim (toString .Values.monitoring.prometheusRule.exporterSelector) -}}
{{- . -}}
{{- else -}}
namespace="{{ .Release.Namespace }}", service="{{ include "ingest-backup.fullname" . }}-exporter"
{{- end -}}
{{- end -}}

{{/*
A schedule that follows the backup's: <key>.cronSchedule when set, else cronSchedule
shifted by <key>.offsetMinutes (the rule of shiftSchedule, which helm/reschedule.sh
applies too). (dict "ctx" $ "key" "verify"|"retention" "job" NAME "noun" "the verification"
"off" "verify.enabled=false"): the job's name and noun and how to do without it, for the messages.
*/}}
{{- define "ingest-backup.offsetSchedule" -}}
{{- $key := .key -}}
{{- $values := index .ctx.Values $key -}}
{{- if trim (toString $values.cronSchedule) -}}
{{- $r := include "ingest-backup.checkCron" (dict "what" (printf "%s.cronSchedule" $key) "text" $values.cronSchedule) -}}
{{- if hasPrefix "err:" $r -}}
{{- fail (trimPrefix "err:" $r) -}}
{{- end -}}
{{- trimPrefix "ok:" $r -}}
{{- else -}}
{{- $off := $values.offsetMinutes -}}
{{- if not (regexMatch "^[0-9]+$" (toString $off)) -}}
{{- fail (printf "%s.offsetMinutes %v must be a whole number of minutes (1-1439)" $key $off) -}}
{{- end -}}
{{- if or (lt (int $off) 1) (gt (int $off) 1439) -}}
{{- fail (printf "%s.offsetMinutes %v must be between 1 and 1439 (under a day)" $key $off) -}}
{{- end -}}
{{- $backup := include "ingest-backup.backupSchedule" .ctx -}}
{{- $macros := include "ingest-backup.cronMacros" .ctx | fromJson -}}
{{- $expanded := get $macros $backup | default $backup -}}
{{- $r := include "ingest-backup.shiftSchedule" (dict "schedule" $expanded "offset" $off) -}}
{{- if hasPrefix "ok:" $r -}}
{{- trimPrefix "ok:" $r -}}
{{- else -}}
{{- fail (printf "cannot derive the %s schedule from cronSchedule %q plus %s.offsetMinutes=%v: %s. Set %s.cronSchedule to the schedule %s should run on (or %s)" .job $backup $key $off (trimPrefix "err:" $r) $key .noun .off) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The verify schedule: verify.cronSchedule, else cronSchedule + verify.offsetMinutes. */}}
{{- define "ingest-backup.verifySchedule" -}}
{{- include "ingest-backup.offsetSchedule" (dict "ctx" . "key" "verify" "job" "verify" "noun" "the verification" "off" "verify.enabled=false") -}}
{{- end -}}

{{/* The prune schedule: retention.cronSchedule, else cronSchedule + retention.offsetMinutes. */}}
{{- define "ingest-backup.pruneSchedule" -}}
{{- include "ingest-backup.offsetSchedule" (dict "ctx" . "key" "retention" "job" "prune" "noun" "the prune" "off" "retention.afterBackup=true, which prunes inside the backup Job") -}}
{{- end -}}

{{/*
"true" when the prune runs as a CronJob of its own (retention.enabled, retention.afterBackup
false), with its own credentials; else the backup Job prunes (backup --prune) or nothing does.
*/}}
{{- define "ingest-backup.pruneCronJob" -}}
{{- if and .Values.retention.enabled (not .Values.retention.afterBackup) -}}
true
{{- end -}}
{{- end -}}

{{/*
The prune CronJob's ServiceAccount: its own (retention.serviceAccount.create; name default
<fullname>-prune), an existing one named in retention.serviceAccount.name, else the chart's.
*/}}
{{- define "ingest-backup.pruneServiceAccountName" -}}
{{- $sa := .Values.retention.serviceAccount -}}
{{- if $sa.create -}}
{{- default (printf "%s-prune" (include "ingest-backup.fullname" .)) $sa.name -}}
{{- else if $sa.name -}}
{{- $sa.name -}}
{{- else -}}
{{- include "ingest-backup.serviceAccountName" . -}}
{{- end -}}
{{- end -}}

{{/* True ("true") when the prune CronJob runs as a ServiceAccount other than the chart's. */}}
{{- define "ingest-backup.pruneOwnIdentity" -}}
{{- $sa := .Values.retention.serviceAccount -}}
{{- if or $sa.create $sa.name -}}
true
{{- end -}}
{{- end -}}

{{/* The prune CronJob's AWS_ROLE_ARN: retention.roleArn when set (even ""), else aws.roleArn. */}}
{{- define "ingest-backup.pruneRoleArn" -}}
{{- if kindIs "invalid" .Values.retention.roleArn -}}
{{- .Values.aws.roleArn -}}
{{- else -}}
{{- .Values.retention.roleArn -}}
{{- end -}}
{{- end -}}

{{/* Render-time checks of the values. */}}
{{- define "ingest-backup.validate" -}}
{{- if not (trim (toString .Values.image.repository)) -}}
{{- fail "image.repository is required: build the image (docker build -t REGISTRY/ingest-backup:TAG .), push it to a registry the cluster can pull from, and set image.repository (and image.tag or image.digest) in helm/config/<stage>.yaml" -}}
{{- end -}}
{{- $scheme := include "ingest-backup.storeScheme" . -}}
{{- $url := trim (toString .Values.store.url) -}}
{{- if eq $scheme "other" -}}
{{- fail (printf "store.url %q has an unknown scheme: give s3://bucket/prefix (Amazon S3 or an S3-compatible server), gs://bucket/prefix (Google Cloud Storage) or az://container/prefix (Azure Blob Storage), or leave it empty for s3.bucket and backupDir" $url) -}}
{{- end -}}
{{- if and (not $scheme) (not .Values.s3.bucket) -}}
{{- fail "s3.bucket is required (S3_BUCKET): set it in helm/config/<stage>.yaml or with --set s3.bucket=NAME, or set store.url (s3://, gs:// or az://)" -}}
{{- end -}}
{{- $g := .Values.gcs -}}
{{- if and $g.existingSecret (ne $scheme "gs") -}}
{{- fail (printf "gcs.existingSecret is set but the store is not on Google Cloud Storage (store.url %q): set store.url to gs://bucket/prefix, or remove gcs.existingSecret" $url) -}}
{{- end -}}
{{- $az := .Values.azure -}}
{{- if and (or $az.existingSecret $az.storageAccount $az.workloadIdentity) (ne $scheme "az") -}}
{{- fail (printf "azure.existingSecret, azure.storageAccount or azure.workloadIdentity is set but the store is not on Azure Blob Storage (store.url %q): set store.url to az://container/prefix, or remove the azure values" $url) -}}
{{- end -}}
{{- if and $az.workloadIdentity (not $az.storageAccount) -}}
{{- fail "azure.workloadIdentity needs azure.storageAccount (AZURE_STORAGE_ACCOUNT): the storage account the workload identity signs in to" -}}
{{- end -}}
{{- if not (include "ingest-backup.s3Store" .) -}}
{{- $s3 := .Values.s3 -}}
{{- $s := .Values.secrets -}}
{{- if or $s3.region $s3.endpoint $s3.sse $s3.sseKmsKeyId $s3.storageClass .Values.aws.roleArn .Values.aws.roleSessionName $s.awsAccessKeyId $s.awsSecretAccessKey .Values.retention.existingSecret (not (kindIs "invalid" .Values.retention.roleArn)) -}}
{{- fail (printf "store.url %q is not on S3, but S3 settings are set (s3.region, s3.endpoint, s3.sse, s3.sseKmsKeyId, s3.storageClass, aws.*, secrets.awsAccessKeyId, secrets.awsSecretAccessKey, retention.existingSecret or retention.roleArn): remove them (give the prune CronJob an identity of its own with retention.serviceAccount)" $url) -}}
{{- end -}}
{{- if .Values.lock.mode -}}
{{- fail (printf "lock.mode is S3 Object Lock, which store.url %q does not offer: remove lock.mode (use the storage service's own immutability policies on the bucket or container)" $url) -}}
{{- end -}}
{{- end -}}
{{- if regexMatch "^mongodb(\\+srv)?://[^/@]*:[^/@]*@" (toString .Values.mongo.uri) -}}
{{- fail "mongo.uri carries a password: put the URI into a Secret and name it in mongo.uriSecret.name (the value is never rendered outside a Secret)" -}}
{{- end -}}
{{- $s := .Values.secrets -}}
{{- if and $s.existingSecret (or $s.awsAccessKeyId $s.awsSecretAccessKey $s.slackWebhookUrl $s.alertWebhookUrl .Values.heartbeat.url) -}}
{{- fail "secrets.existingSecret is set together with secret values (secrets.* or heartbeat.url): use one or the other" -}}
{{- end -}}
{{- if and (not $s.existingSecret) (ne (empty $s.awsAccessKeyId) (empty $s.awsSecretAccessKey)) -}}
{{- fail "secrets.awsAccessKeyId and secrets.awsSecretAccessKey go together: give both or neither (neither with IRSA)" -}}
{{- end -}}
{{- $d := .Values.drill -}}
{{- if $d.enabled -}}
{{- $scratch := $d.scratchUri -}}
{{- if and (not $scratch.existingSecret) (not $scratch.value) -}}
{{- fail "drill.enabled needs the scratch server's connection string (DRILL_URI), which is never the backed-up deployment: put it into a Secret and name it in drill.scratchUri.existingSecret (kubectl create secret generic ingest-backup-drill-scratch --from-literal=DRILL_URI=mongodb://...), or give drill.scratchUri.value in a values file of mode 600" -}}
{{- end -}}
{{- if and $scratch.existingSecret $scratch.value -}}
{{- fail "drill.scratchUri.existingSecret and drill.scratchUri.value are both set: use one or the other" -}}
{{- end -}}
{{- if and $scratch.value $s.existingSecret -}}
{{- fail "drill.scratchUri.value goes into the chart's Secret, which is not rendered with secrets.existingSecret: put the scratch URI into a Secret too and name it in drill.scratchUri.existingSecret" -}}
{{- end -}}
{{- if and $scratch.value (not $scratch.existingSecret) (has $scratch.key (values $s.keys)) -}}
{{- fail (printf "drill.scratchUri.key %s is already the key of another value in the chart's Secret (secrets.keys): choose another, e.g. DRILL_URI" $scratch.key) -}}
{{- end -}}
{{- if and $scratch.value (eq (trim (toString $scratch.value)) (trim (toString .Values.mongo.uri))) (not .Values.mongo.uriSecret.name) -}}
{{- fail "drill.scratchUri.value is mongo.uri, the backed-up deployment: a drill restores into a scratch server of its own (the tool refuses the source with exit 2)" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.exporter.serviceMonitor.enabled (not .Values.exporter.enabled) -}}
{{- fail "exporter.serviceMonitor.enabled needs exporter.enabled: the ServiceMonitor scrapes the exporter's Service" -}}
{{- end -}}
{{- $r := .Values.retention -}}
{{- if and $r.enabled (not (or (include "ingest-backup.retentionRules" . | trim))) -}}
{{- fail "retention.enabled is true but no keep rule is set: give at least one of retention.keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, keepYearly, keepWithin or keepPitr (a prune without one would remove every backup)" -}}
{{- end -}}
{{- $sa := $r.serviceAccount -}}
{{- if not (include "ingest-backup.pruneCronJob" .) -}}
{{- if or $r.existingSecret $sa.create $sa.name $sa.annotations (not (kindIs "invalid" $r.roleArn)) -}}
{{- fail "retention.existingSecret, retention.serviceAccount and retention.roleArn are the credentials of the prune CronJob, which is only rendered with retention.enabled=true and retention.afterBackup=false (with afterBackup the backup Job prunes, with the backup's credentials): set retention.afterBackup=false, or remove these values" -}}
{{- end -}}
{{- else -}}
{{- if and $sa.annotations (not $sa.create) -}}
{{- fail "retention.serviceAccount.annotations are set but retention.serviceAccount.create is false: they go on the ServiceAccount the chart creates for the prune CronJob (set create: true), or on your own ServiceAccount named in retention.serviceAccount.name" -}}
{{- end -}}
{{- $annotations := .Values.serviceAccount.annotations -}}
{{- if $sa.create -}}{{- $annotations = $sa.annotations -}}{{- else if $sa.name -}}{{- $annotations = dict -}}{{- end -}}
{{- if and (include "ingest-backup.pruneRoleArn" .) (hasKey $annotations "eks.amazonaws.com/role-arn") -}}
{{- fail "the prune CronJob would assume AWS_ROLE_ARN (retention.roleArn, else aws.roleArn) on top of IRSA (eks.amazonaws.com/role-arn on its ServiceAccount): with IRSA the web-identity credentials already are the role, and assuming another on top breaks them. Set retention.roleArn to \"\"" -}}
{{- end -}}
{{- end -}}
{{- $l := .Values.lock -}}
{{- if and (not $l.mode) (not (kindIs "invalid" $l.days)) -}}
{{- fail "lock.days is set but lock.mode is empty: set lock.mode to governance or compliance (docs/src/guide/immutable.md), or lock.days to null" -}}
{{- end -}}
{{- if and $l.mode (kindIs "invalid" $l.days) (not $r.enabled) -}}
{{- fail "lock.mode is set without lock.days and without retention: the length of a new backup's lock is derived from the retention rules (keepWithin, else keepHourly, keepDaily, keepLast). Enable retention with its rules, or set lock.days (e.g. 7 or 36h)" -}}
{{- end -}}
{{- range $i, $key := .Values.encryption.recipients -}}
{{- if hasPrefix "AGE-SECRET-KEY-" (upper (toString $key)) -}}
{{- fail (printf "encryption.recipients[%d] is a private key: values hold public keys only (age-keygen -y key.txt prints the public key); put the private key into the Secret named by encryption.identitySecret.name" $i) -}}
{{- end -}}
{{- if not (regexMatch "^age1[02-9ac-hj-np-z]{58}$" (toString $key)) -}}
{{- fail (printf "encryption.recipients[%d] is not an age public key: give age1 followed by 58 characters, as age-keygen prints" $i) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.aws.roleArn (hasKey .Values.serviceAccount.annotations "eks.amazonaws.com/role-arn") -}}
{{- fail "aws.roleArn and the IRSA annotation serviceAccount.annotations.eks.amazonaws.com/role-arn are both set: with IRSA the web-identity credentials already are the role, and assuming aws.roleArn on top breaks them. Keep the annotation and set aws.roleArn to \"\" (or drop the annotation to use keys plus aws.roleArn)" -}}
{{- end -}}
{{- end -}}

{{/* The container image: repository:tag, or repository@digest when image.digest is set. */}}
{{- define "ingest-backup.image" -}}
{{- $i := .Values.image -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $i.repository $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $i.repository ($i.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Mebibytes of a quantity written as <n>Mi or <n>Gi (values.schema.json allows no other). */}}
{{- define "ingest-backup.mebibytes" -}}
{{- $q := toString . -}}
{{- if hasSuffix "Gi" $q -}}
{{- mul (atoi (trimSuffix "Gi" $q)) 1024 -}}
{{- else -}}
{{- atoi (trimSuffix "Mi" $q) -}}
{{- end -}}
{{- end -}}

{{/*
The pod's ephemeral storage: the spool and /tmp emptyDirs at their size limits, plus
64Mi for the container's logs. Requested (so the scheduler places the pod where the
spool fits) and the limit (so the kubelet evicts this pod, not a neighbour).
*/}}
{{- define "ingest-backup.ephemeralStorage" -}}
{{- add (include "ingest-backup.mebibytes" .Values.spool.sizeLimit) (include "ingest-backup.mebibytes" .Values.tmp.sizeLimit) 64 -}}Mi
{{- end -}}

{{/* The container's resources: resources, plus ephemeral-storage. */}}
{{- define "ingest-backup.resources" -}}
{{- $r := deepCopy .Values.resources -}}
{{- $storage := include "ingest-backup.ephemeralStorage" . -}}
{{- $requests := get $r "requests" | default dict -}}
{{- $limits := get $r "limits" | default dict -}}
{{- if not (hasKey $requests "ephemeral-storage") -}}{{- $_ := set $requests "ephemeral-storage" $storage -}}{{- end -}}
{{- if not (hasKey $limits "ephemeral-storage") -}}{{- $_ := set $limits "ephemeral-storage" $storage -}}{{- end -}}
{{- $_ := set $r "requests" $requests -}}
{{- $_ := set $r "limits" $limits -}}
{{- toYaml $r -}}
{{- end -}}

{{/* A secretKeyRef env entry: (dict "env" NAME "key" KEY "optional" BOOL "ctx" $). */}}
{{- define "ingest-backup.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
      optional: {{ .optional }}
{{- end -}}

{{/*
Environment of the containers: (dict "ctx" $ "component" "backup"|"verify"|"pitr"|"prune"|"restore"|"drill"|"exporter").
Secrets only through secretKeyRef. The restore Job is rendered on its own (helm/restore.sh),
without the install's secret values, so it refers to every key of the install's Secret,
optionally. The prune Job's AWS keys come from retention.existingSecret when set, and never
from the install's Secret when it runs as a ServiceAccount of its own (retention.serviceAccount).
The drill Job's database is the scratch server (DRILL_URI), never the source; the exporter
reads only the store: no database, no alerts, no heartbeat, no spool.
*/}}
{{- define "ingest-backup.env" -}}
{{- $restore := eq .component "restore" -}}
{{- $prune := eq .component "prune" -}}
{{- $drill := eq .component "drill" -}}
{{- $exporter := eq .component "exporter" -}}
{{- $ := .ctx -}}
{{- $v := $.Values -}}
{{- if or $prune $exporter }}
{{- /* the prune and the exporter never read the database: no MONGO_URI, nor the Secret holding it */}}
{{- else if $restore }}
- name: RESTORE_URI
  valueFrom:
    secretKeyRef:
      name: {{ $v.restore.targetSecret.name }}
      key: {{ $v.restore.targetSecret.key }}
{{- else if $drill }}
{{- /* the scratch server, from its Secret or the chart's; the source's URI is not given */}}
- name: DRILL_URI
  valueFrom:
    secretKeyRef:
      name: {{ $v.drill.scratchUri.existingSecret | default (include "ingest-backup.fullname" $) }}
      key: {{ $v.drill.scratchUri.key }}
{{- else if $v.mongo.uriSecret.name }}
- name: MONGO_URI
  valueFrom:
    secretKeyRef:
      name: {{ $v.mongo.uriSecret.name }}
      key: {{ $v.mongo.uriSecret.key }}
{{- else }}
- name: MONGO_URI
  value: {{ $v.mongo.uri | quote }}
{{- end }}
{{- $scheme := include "ingest-backup.storeScheme" $ }}
{{- if not $scheme }}
{{- /* no store.url: the original scripts' variables name the store */}}
- name: S3_BUCKET
  value: {{ $v.s3.bucket | quote }}
- name: BACKUP_DIR
  value: {{ $v.backupDir | quote }}
{{- end }}
{{- /* the prune running as a ServiceAccount of its own never gets the install's key file or keys */}}
{{- $cloudKeys := not (and $prune (include "ingest-backup.pruneOwnIdentity" $)) }}
{{- if and (eq $scheme "gs") $v.gcs.existingSecret $cloudKeys }}
- name: GOOGLE_APPLICATION_CREDENTIALS
  value: /var/run/secrets/gcs/key.json
{{- end }}
{{- if eq $scheme "az" }}
{{- with $v.azure.storageAccount }}
- name: AZURE_STORAGE_ACCOUNT
  value: {{ . | quote }}
{{- end }}
{{- if and $v.azure.existingSecret $cloudKeys }}
{{- range $key := list "AZURE_STORAGE_CONNECTION_STRING" "AZURE_STORAGE_ACCOUNT" "AZURE_STORAGE_KEY" "AZURE_STORAGE_SAS_TOKEN" }}
{{- if not (and (eq $key "AZURE_STORAGE_ACCOUNT") $v.azure.storageAccount) }}
{{ include "ingest-backup.secretEnv" (dict "env" $key "key" $key "name" $v.azure.existingSecret "optional" true) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- $tuningPrefix := ternary "STORE_" "S3_" (has $scheme (list "gs" "az")) }}
{{- range $variable, $value := dict "CONNECT_TIMEOUT" $v.store.connectTimeout "ATTEMPT_TIMEOUT" $v.store.attemptTimeout "OPERATION_TIMEOUT" $v.store.operationTimeout "MAX_ATTEMPTS" $v.store.maxAttempts }}
{{- if $value }}
- name: {{ printf "%s%s" $tuningPrefix $variable }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- with $v.s3.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with $v.s3.endpoint }}
- name: S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with $v.s3.sse }}
- name: S3_SSE
  value: {{ . | quote }}
{{- end }}
{{- with $v.s3.sseKmsKeyId }}
- name: S3_SSE_KMS_KEY_ID
  value: {{ . | quote }}
{{- end }}
{{- with $v.s3.storageClass }}
- name: S3_STORAGE_CLASS
  value: {{ . | quote }}
{{- end }}
{{- with ternary (include "ingest-backup.pruneRoleArn" $) $v.aws.roleArn (eq (toString $prune) "true") }}
- name: AWS_ROLE_ARN
  value: {{ . | quote }}
{{- end }}
{{- with $v.aws.roleSessionName }}
- name: AWS_ROLE_SESSION_NAME
  value: {{ . | quote }}
{{- end }}
{{- if not (or $restore $exporter) }}
- name: NOTIFY_SUCCESS
  value: {{ $v.notifySuccess | toString | quote }}
- name: HEARTBEAT_METHOD
  value: {{ $v.heartbeat.method | quote }}
{{- end }}
{{- if not $exporter }}
- name: INGEST_BACKUP_SPOOL_DIR
  value: {{ $v.spool.mountPath | quote }}
{{- end }}
{{- $s := $v.secrets }}
{{- $values := include "ingest-backup.secretValues" $ | fromJson }}
{{- $name := $s.existingSecret | default (include "ingest-backup.fullname" $) }}
{{- $aws := list "awsAccessKeyId" "awsSecretAccessKey" }}
{{- range $field := splitList " " (include "ingest-backup.secretFields" $) }}
{{- $key := get $s.keys $field }}
{{- if and (or $restore $exporter) (has $field (list "slackWebhookUrl" "alertWebhookUrl" "heartbeatUrl")) }}
{{- /* a restore and the exporter send no alerts and no heartbeat */}}
{{- else if and (has $field $aws) (not (include "ingest-backup.s3Store" $)) }}
{{- /* no AWS keys for a store on Google Cloud Storage or Azure */}}
{{- else if and $prune (has $field $aws) $v.retention.existingSecret }}
{{- /* the prune's own keys, which may delete: required, so a wrong name stops the pod */}}
{{ include "ingest-backup.secretEnv" (dict "env" $key "key" $key "name" $v.retention.existingSecret "optional" false) }}
{{- else if and $prune (has $field $aws) (include "ingest-backup.pruneOwnIdentity" $) }}
{{- /* its own ServiceAccount (IRSA): never the backup's keys, which would take precedence */}}
{{- else if or $s.existingSecret $restore }}
{{ include "ingest-backup.secretEnv" (dict "env" $key "key" $key "name" $name "optional" true) }}
{{- else if get $values $field }}
{{ include "ingest-backup.secretEnv" (dict "env" $key "key" $key "name" $name "optional" false) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* LOCK_DAYS: lock.days as written (7, "36h"); a number from a values file is a float. */}}
{{- define "ingest-backup.lockDays" -}}
{{- $d := .Values.lock.days -}}
{{- if kindIs "string" $d -}}
{{- trim $d -}}
{{- else -}}
{{- int64 $d -}}
{{- end -}}
{{- end -}}

{{/* The PRUNE_KEEP_* variables of the retention rules that are set (not null). */}}
{{- define "ingest-backup.retentionRules" -}}
{{- $r := .Values.retention -}}
{{- range $key, $env := dict "keepLast" "PRUNE_KEEP_LAST" "keepHourly" "PRUNE_KEEP_HOURLY" "keepDaily" "PRUNE_KEEP_DAILY" "keepWeekly" "PRUNE_KEEP_WEEKLY" "keepMonthly" "PRUNE_KEEP_MONTHLY" "keepYearly" "PRUNE_KEEP_YEARLY" "keepWithin" "PRUNE_KEEP_WITHIN" "keepPitr" "PRUNE_KEEP_PITR" }}
{{- $value := get $r $key }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ $env }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The retention environment of the backup and prune Jobs: (dict "ctx" $ "component" C). Both
get the policy: the prune applies it; the backup derives a new backup's first lock from it
(lock.mode) and checks a bucket's default retention against it. PRUNE_AFTER_BACKUP only
for the backup Job with retention.afterBackup (backup --prune).
*/}}
{{- define "ingest-backup.retentionEnv" -}}
{{- $ := .ctx -}}
{{- $r := $.Values.retention -}}
{{- if $r.enabled }}
{{- if and (eq .component "backup") $r.afterBackup }}
- name: PRUNE_AFTER_BACKUP
  value: "true"
{{- end }}
{{- include "ingest-backup.retentionRules" $ }}
- name: PRUNE_TIMEZONE
  value: {{ $r.timezone | quote }}
- name: PRUNE_STALE_AFTER
  value: {{ $r.staleAfter | quote }}
{{- end }}
{{- end -}}

{{/*
The Job spec shared by the CronJobs and the restore Job: (dict "ctx" $ "job" .Values.backup|verify|pitr|retention|drill|restore
"component" "backup"|"verify"|"pitr"|"prune"|"drill"|"restore" "args" (list ...)).
*/}}
{{- define "ingest-backup.jobTemplate" -}}
{{- $ := .ctx -}}
{{- $v := $.Values -}}
{{- $job := .job -}}
{{- $restore := eq .component "restore" -}}
{{- /* Only these three read encrypted backups; the backup and pitr Jobs never get the key. */}}
{{- $identity := has .component (list "verify" "restore" "drill") -}}
{{- $component := .component -}}
{{- /* The GCS key file: every Job but a prune running as a ServiceAccount of its own. */}}
{{- $gcsKey := and (eq (include "ingest-backup.storeScheme" $) "gs") $v.gcs.existingSecret (not (and (eq $component "prune") (include "ingest-backup.pruneOwnIdentity" $))) -}}
metadata:
  {{- with .generateName }}
  # A new name for every run; kubectl create fills in the suffix.
  generateName: {{ . }}
  {{- end }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  labels:
    {{- include "ingest-backup.labels" $ | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  backoffLimit: {{ $job.backoffLimit }}
  activeDeadlineSeconds: {{ $job.activeDeadlineSeconds }}
  {{- if $restore }}
  # Kept a while for its logs, then removed by the TTL controller.
  ttlSecondsAfterFinished: {{ $job.ttlSecondsAfterFinished }}
  {{- else }}
  # Exit status 2 is bad configuration: retrying cannot help, so the Job fails at
  # once. An evicted or preempted pod does not use up a retry.
  podFailurePolicy:
    rules:
      - action: FailJob
        onExitCodes:
          containerName: ingest-backup
          operator: In
          values: [2]
      - action: Ignore
        onPodConditions:
          - type: DisruptionTarget
            status: "True"
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "ingest-backup.labels" $ | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
        {{- if and (eq (include "ingest-backup.storeScheme" $) "az") $v.azure.workloadIdentity (not (hasKey $v.podLabels "azure.workload.identity/use")) }}
        # AKS workload identity: the webhook injects AZURE_CLIENT_ID, AZURE_TENANT_ID and
        # AZURE_FEDERATED_TOKEN_FILE from the ServiceAccount's azure.workload.identity/client-id.
        azure.workload.identity/use: "true"
        {{- end }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      # Never: a failed attempt keeps its pod and logs; retries are the Job's.
      restartPolicy: Never
      # Above the tool's worst case after SIGTERM: aborting the multipart upload
      # (retried for up to 60 s) plus delivering the failure alert (at most 30 s).
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- if eq $component "prune" }}
      # retention.serviceAccount's when set (the prune may delete: an identity of its own), else the chart's.
      serviceAccountName: {{ include "ingest-backup.pruneServiceAccountName" $ }}
      {{- else }}
      serviceAccountName: {{ include "ingest-backup.serviceAccountName" $ }}
      {{- end }}
      # The tool never talks to the Kubernetes API (IRSA and AKS workload identity mount
      # their own token; GKE Workload Identity needs none).
      automountServiceAccountToken: false
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      containers:
        - name: ingest-backup
          image: {{ include "ingest-backup.image" $ | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            {{- $store := list }}
            {{- with trim (toString $v.store.url) }}
            {{- $store = list "--store" . }}
            {{- end }}
            {{- toYaml (concat .args $store $job.extraArgs) | nindent 12 }}
          env:
            {{- include "ingest-backup.env" (dict "ctx" $ "component" $component) | trim | nindent 12 }}
            {{- if has $component (list "backup" "prune") }}
            {{- with include "ingest-backup.retentionEnv" (dict "ctx" $ "component" $component) | trim }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- end }}
            {{- if and (eq $component "backup") $v.lock.mode }}
            # S3 Object Lock: every object of each backup gets a retain-until date (the bucket must
            # have Object Lock); verification records and oplog slices copy their backup's lock.
            - name: LOCK_MODE
              value: {{ $v.lock.mode | quote }}
            {{- if not (kindIs "invalid" $v.lock.days) }}
            - name: LOCK_DAYS
              value: {{ include "ingest-backup.lockDays" $ | quote }}
            {{- end }}
            {{- end }}
            {{- if and (has .component (list "backup" "pitr")) $v.encryption.recipients }}
            # Public keys only: the backup and the oplog slices never hold a private key.
            - name: AGE_RECIPIENTS
              value: {{ join "," $v.encryption.recipients | quote }}
            {{- end }}
            {{- if and $identity $v.encryption.identitySecret.name }}
            - name: AGE_IDENTITY_FILE
              value: {{ printf "/etc/ingest-backup/age/%s" $v.encryption.identitySecret.key | quote }}
            {{- end }}
          resources:
            {{- include "ingest-backup.resources" $ | nindent 12 }}
          securityContext:
            {{- toYaml $v.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: spool
              mountPath: {{ $v.spool.mountPath }}
            - name: tmp
              mountPath: /tmp
            {{- if and $identity $v.encryption.identitySecret.name }}
            - name: age-identity
              mountPath: /etc/ingest-backup/age
              readOnly: true
            {{- end }}
            {{- if $gcsKey }}
            - name: gcs-key
              mountPath: /var/run/secrets/gcs
              readOnly: true
            {{- end }}
      volumes:
        - name: spool
          emptyDir:
            sizeLimit: {{ $v.spool.sizeLimit }}
        - name: tmp
          emptyDir:
            sizeLimit: {{ $v.tmp.sizeLimit }}
        {{- if and $identity $v.encryption.identitySecret.name }}
        # The private key, for the verify, drill and restore Jobs only.
        - name: age-identity
          secret:
            secretName: {{ $v.encryption.identitySecret.name }}
            defaultMode: 0440
            items:
              - key: {{ $v.encryption.identitySecret.key }}
                path: {{ $v.encryption.identitySecret.key }}
        {{- end }}
        {{- if $gcsKey }}
        # The Google Cloud service-account key (GOOGLE_APPLICATION_CREDENTIALS).
        - name: gcs-key
          secret:
            secretName: {{ $v.gcs.existingSecret }}
            defaultMode: 0440
            items:
              - key: key.json
                path: key.json
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
