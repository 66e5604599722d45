{{/*
Names. The CronJobs are called ingest-backup and ingest-backup-verify whatever the
release is called: the seed's reschedule.sh (and ours) patch `cronjob ingest-backup`.
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

{{- define "ingest-backup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ingest-backup.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* True ("true") when the chart itself renders a Secret. */}}
{{- define "ingest-backup.createSecret" -}}
{{- $s := .Values.secrets -}}
{{- if and (not $s.existingSecret) (or $s.awsAccessKeyId $s.awsSecretAccessKey $s.slackWebhookUrl $s.alertWebhookUrl) -}}
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

{{/* The backup schedule, checked. */}}
{{- define "ingest-backup.backupSchedule" -}}
{{- $s := regexReplaceAll "\\s+" (trim (toString .Values.cronSchedule)) " " -}}
{{- if ne (len (splitList " " $s)) 5 -}}
{{- fail (printf "cronSchedule %q must have exactly five fields (minute hour day-of-month month day-of-week)" .Values.cronSchedule) -}}
{{- end -}}
{{- range splitList " " $s -}}
{{- if not (regexMatch "^[0-9A-Za-z*,/-]+$" .) -}}
{{- fail (printf "cronSchedule %q: field %q may only hold digits, names, '*', ',', '-' and '/'" $.Values.cronSchedule .) -}}
{{- end -}}
{{- end -}}
{{- $s -}}
{{- end -}}

{{/* The verify schedule: verify.cronSchedule, else cronSchedule + verify.offsetMinutes. */}}
{{- define "ingest-backup.verifySchedule" -}}
{{- $explicit := regexReplaceAll "\\s+" (trim (toString .Values.verify.cronSchedule)) " " -}}
{{- if $explicit -}}
{{- if ne (len (splitList " " $explicit)) 5 -}}
{{- fail (printf "verify.cronSchedule %q must have exactly five fields" .Values.verify.cronSchedule) -}}
{{- end -}}
{{- $explicit -}}
{{- else -}}
{{- $off := .Values.verify.offsetMinutes -}}
{{- if not (regexMatch "^[0-9]+$" (toString $off)) -}}
{{- fail (printf "verify.offsetMinutes %v must be a whole number of minutes (1-1439)" $off) -}}
{{- end -}}
{{- if or (lt (int $off) 1) (gt (int $off) 1439) -}}
{{- fail (printf "verify.offsetMinutes %v must be between 1 and 1439 (under a day)" $off) -}}
{{- end -}}
{{- $backup := include "ingest-backup.backupSchedule" . -}}
{{- $r := include "ingest-backup.shiftSchedule" (dict "schedule" $backup "offset" $off) -}}
{{- if hasPrefix "ok:" $r -}}
{{- trimPrefix "ok:" $r -}}
{{- else -}}
{{- fail (printf "cannot derive the verify schedule from cronSchedule %q plus verify.offsetMinutes=%v: %s. Set verify.cronSchedule to the schedule the verification should run on (or verify.enabled=false)" $backup $off (trimPrefix "err:" $r)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Render-time checks of the values. */}}
{{- define "ingest-backup.validate" -}}
{{- if not .Values.s3.bucket -}}
{{- fail "s3.bucket is required (S3_BUCKET): set it in helm/config/<stage>.yaml or with --set s3.bucket=NAME" -}}
{{- end -}}
{{- if regexMatch "^mongodb(\\+srv)?://[^/@]*:[^/@]*@" (toString .Values.mongo.uri) -}}
{{- fail "mongo.uri carries a password: put the URI into a Secret and name it in mongo.uriSecret.name (the value is never rendered outside a Secret)" -}}
{{- end -}}
{{- $s := .Values.secrets -}}
{{- if and $s.existingSecret (or $s.awsAccessKeyId $s.awsSecretAccessKey $s.slackWebhookUrl $s.alertWebhookUrl) -}}
{{- fail "secrets.existingSecret is set together with secret values: use one or the other" -}}
{{- end -}}
{{- if and (not $s.existingSecret) (ne (empty $s.awsAccessKeyId) (empty $s.awsSecretAccessKey)) -}}
{{- fail "secrets.awsAccessKeyId and secrets.awsSecretAccessKey go together: give both or neither (neither with IRSA)" -}}
{{- end -}}
{{- end -}}

{{/* A secretKeyRef env entry: (dict "env" NAME "key" KEY "ctx" $). */}}
{{- define "ingest-backup.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "ingest-backup.secretName" .ctx }}
      key: {{ .key }}
      optional: {{ if .ctx.Values.secrets.existingSecret }}true{{ else }}false{{ end }}
{{- end -}}

{{/* Environment of both containers. Secrets only through secretKeyRef. */}}
{{- define "ingest-backup.env" -}}
{{- $v := .Values -}}
{{- if $v.mongo.uriSecret.name }}
- name: MONGO_URI
  valueFrom:
    secretKeyRef:
      name: {{ $v.mongo.uriSecret.name }}
      key: {{ $v.mongo.uriSecret.key }}
{{- else }}
- name: MONGO_URI
  value: {{ $v.mongo.uri | quote }}
{{- end }}
- name: S3_BUCKET
  value: {{ $v.s3.bucket | quote }}
- name: BACKUP_DIR
  value: {{ $v.backupDir | quote }}
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
{{- with $v.aws.roleArn }}
- name: AWS_ROLE_ARN
  value: {{ . | quote }}
{{- end }}
{{- with $v.aws.roleSessionName }}
- name: AWS_ROLE_SESSION_NAME
  value: {{ . | quote }}
{{- end }}
- name: NOTIFY_SUCCESS
  value: {{ $v.notifySuccess | toString | quote }}
- name: INGEST_BACKUP_SPOOL_DIR
  value: {{ $v.spool.mountPath | quote }}
{{- $s := $v.secrets }}
{{- if $s.existingSecret }}
{{- range $field := list "awsAccessKeyId" "awsSecretAccessKey" "slackWebhookUrl" "alertWebhookUrl" }}
{{ include "ingest-backup.secretEnv" (dict "env" (get $s.keys $field) "key" (get $s.keys $field) "ctx" $) }}
{{- end }}
{{- else }}
{{- range $field := list "awsAccessKeyId" "awsSecretAccessKey" "slackWebhookUrl" "alertWebhookUrl" }}
{{- if get $s $field }}
{{ include "ingest-backup.secretEnv" (dict "env" (get $s.keys $field) "key" (get $s.keys $field) "ctx" $) }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The Job template shared by both CronJobs: (dict "ctx" $ "job" .Values.backup|verify
"component" "backup"|"verify" "args" (list ...)).
*/}}
{{- define "ingest-backup.jobTemplate" -}}
{{- $ := .ctx -}}
{{- $v := $.Values -}}
{{- $job := .job -}}
metadata:
  labels:
    {{- include "ingest-backup.labels" $ | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  backoffLimit: {{ $job.backoffLimit }}
  activeDeadlineSeconds: {{ $job.activeDeadlineSeconds }}
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
  template:
    metadata:
      labels:
        {{- include "ingest-backup.labels" $ | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
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
      serviceAccountName: {{ include "ingest-backup.serviceAccountName" $ }}
      # The tool never talks to the Kubernetes API (IRSA mounts its own token).
      automountServiceAccountToken: false
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      containers:
        - name: ingest-backup
          image: "{{ $v.image.repository }}:{{ $v.image.tag | default $.Chart.AppVersion }}"
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            {{- toYaml (concat .args $job.extraArgs) | nindent 12 }}
          env:
            {{- include "ingest-backup.env" $ | trim | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: spool
              mountPath: {{ $v.spool.mountPath }}
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: spool
          emptyDir:
            sizeLimit: {{ $v.spool.sizeLimit }}
        - name: tmp
          emptyDir:
            sizeLimit: {{ $v.tmp.sizeLimit }}
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
