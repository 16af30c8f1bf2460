{{/*
visionops.name: the chart name (or nameOverride), truncated to 63 characters.
*/}}
{{- define "visionops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
visionops.fullname: the prefix of every resource name, release-based, truncated to 63 characters.
*/}}
{{- define "visionops.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
visionops.componentName: "<fullname>-<component>" within 63 characters; call with (list . "component").
*/}}
{{- define "visionops.componentName" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $suffix := printf "-%s" $component }}
{{- printf "%s%s" (include "visionops.fullname" $root | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{/*
visionops.chart: chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "visionops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
visionops.labels: the common labels of every resource (selector labels plus chart, version, managed-by).
*/}}
{{- define "visionops.labels" -}}
helm.sh/chart: {{ include "visionops.chart" . }}
{{ include "visionops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: visionops
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
visionops.selectorLabels: the immutable labels a Service or Deployment selects on (name + instance).
*/}}
{{- define "visionops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "visionops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
visionops.componentLabels: common labels plus app.kubernetes.io/component; call with (list . "component").
*/}}
{{- define "visionops.componentLabels" -}}
{{ include "visionops.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
visionops.componentSelectorLabels: selector labels plus the component; call with (list . "component").
*/}}
{{- define "visionops.componentSelectorLabels" -}}
{{ include "visionops.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
visionops.serviceAccountName: the operator's ServiceAccount (created, or named by serviceAccount.name).
*/}}
{{- define "visionops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "visionops.componentName" (list . "operator")) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
visionops.jobServiceAccountName: the ServiceAccount of training and drift Job pods (no API rights).
*/}}
{{- define "visionops.jobServiceAccountName" -}}
{{- if .Values.jobs.serviceAccount.create }}
{{- default (include "visionops.componentName" (list . "job")) .Values.jobs.serviceAccount.name }}
{{- else }}
{{- .Values.jobs.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
visionops.image: "repository:tag" or "repository@digest" of an image block, tag defaulting to appVersion; call with (dict "image" X "root" .).
*/}}
{{- define "visionops.image" -}}
{{- $image := .image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (toString (default .root.Chart.AppVersion $image.tag)) }}
{{- end }}
{{- end }}

{{/*
visionops.watchNamespaces: namespaces watched when not cluster-wide, one per line (operator.watchNamespaces or the release namespace).
*/}}
{{- define "visionops.watchNamespaces" -}}
{{- $namespaces := .Values.operator.watchNamespaces | default (list .Release.Namespace) }}
{{- range $namespaces | uniq }}
{{ . }}
{{- end }}
{{- end }}

{{/*
visionops.mlflowServiceName: the MLflow tracking Service.
*/}}
{{- define "visionops.mlflowServiceName" -}}
{{- include "visionops.componentName" (list . "mlflow") }}
{{- end }}

{{/*
visionops.mlflowUri: the tracking URI the operator, the Jobs and the predictor use.
*/}}
{{- define "visionops.mlflowUri" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s.%s.svc.%s:%v" (include "visionops.mlflowServiceName" .) .Release.Namespace .Values.clusterDomain .Values.mlflow.service.port }}
{{- else }}
{{- required "mlflow.externalTrackingUri is required when mlflow.enabled is false" .Values.mlflow.externalTrackingUri }}
{{- end }}
{{- end }}

{{/*
visionops.mlflowAllowedHosts: Host headers MLflow accepts (Service DNS names, localhost, extras), with and without a port.
*/}}
{{- define "visionops.mlflowAllowedHosts" -}}
{{- $svc := include "visionops.mlflowServiceName" . }}
{{- $ns := .Release.Namespace }}
{{- $hosts := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) "localhost" "127.0.0.1" }}
{{- $all := list }}
{{- range concat $hosts .Values.mlflow.extraAllowedHosts }}
{{- $all = append $all . }}
{{- if not (contains ":" .) }}
{{- $all = append $all (printf "%s:*" .) }}
{{- end }}
{{- end }}
{{- $all | uniq | join "," }}
{{- end }}

{{/*
visionops.datasetsClaimName: the dataset PVC the samples mount (<fullname>-datasets unless named).
*/}}
{{- define "visionops.datasetsClaimName" -}}
{{- default (include "visionops.componentName" (list . "datasets")) .Values.datasets.claimName }}
{{- end }}

{{/*
visionops.predictorName: the InferenceService name (<fullname>-predictor unless named), 45 characters at most (KServe appends suffixes).
*/}}
{{- define "visionops.predictorName" -}}
{{- default (include "visionops.componentName" (list . "predictor")) .Values.predictor.name | trunc 45 | trimSuffix "-" }}
{{- end }}

{{/*
The telemetry opt-outs every container of the chart gets (MLflow, Evidently, ultralytics, huggingface_hub):
nothing phones home from a factory network. Kept equal to visionops.telemetry.TELEMETRY_OFF by a test.
*/}}
{{- define "visionops.telemetryOffEnv" -}}
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
- name: DO_NOT_TRACK
  value: "true"
- name: ITERATIVE_DO_NOT_TRACK
  value: "1"
- name: YOLO_OFFLINE
  value: "1"
- name: HF_HUB_OFFLINE
  value: "1"
- name: HF_HUB_DISABLE_TELEMETRY
  value: "1"
{{- end }}

{{/*
visionops.mlflowAuthSecretName: the Secret with the MLflow accounts' passwords (mlflow.auth.existingSecret, else the chart's).
*/}}
{{- define "visionops.mlflowAuthSecretName" -}}
{{- .Values.mlflow.auth.existingSecret | default (printf "%s-auth" (include "visionops.componentName" (list . "mlflow"))) }}
{{- end }}

{{/*
visionops.mlflowJobsSecretName: the Secret (username, password) of the jobs' MLflow account in each Job namespace.
*/}}
{{- define "visionops.mlflowJobsSecretName" -}}
{{- .Values.mlflow.auth.jobsSecret | default (printf "%s-jobs" (include "visionops.componentName" (list . "mlflow"))) }}
{{- end }}

{{/*
visionops.mlflowUsername: the MLflow account of a component, (list . "operator"|"jobs"|"console"|"predictor").
*/}}
{{- define "visionops.mlflowUsername" -}}
{{- printf "visionops-%s" (index . 1) }}
{{- end }}

{{/*
visionops.mlflowPasswords: the chart-made passwords as YAML (keys: admin, operator, jobs, console, predictor,
flask-secret-key): those of the installed Secret when there is one (an upgrade keeps them), else new random ones,
made once per render (every template that asks gets the same).
*/}}
{{- define "visionops.mlflowPasswords" -}}
{{- if not .Values.mlflow.auth._made }}
{{- $made := dict }}
{{- $installed := lookup "v1" "Secret" .Release.Namespace (include "visionops.mlflowAuthSecretName" .) }}
{{- range $key := list "admin" "operator" "jobs" "console" "predictor" "flask-secret-key" }}
{{- $old := "" }}
{{- if $installed }}{{- $old = index ($installed.data | default dict) $key | default "" }}{{- end }}
{{- $_ := set $made $key (ternary ($old | b64dec) (randAlphaNum 40) (ne $old "")) }}
{{- end }}
{{- $_ := set .Values.mlflow.auth "_made" $made }}
{{- end }}
{{- toYaml .Values.mlflow.auth._made }}
{{- end }}

{{/*
visionops.mlflowClientEnv: a component's MLflow credentials as container env, (list . "operator"|"console"|"predictor");
the password by reference to its Secret, never as a value.
*/}}
{{- define "visionops.mlflowClientEnv" -}}
{{- $root := index . 0 }}
{{- if $root.Values.mlflow.auth.enabled }}
- name: MLFLOW_TRACKING_USERNAME
  value: {{ include "visionops.mlflowUsername" . | quote }}
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "visionops.mlflowAuthSecretName" $root }}
      key: {{ index . 1 }}
{{- end }}
{{- end }}

{{/*
visionops.mlflowAuthEnv: what MLflow's basic-auth app and the accounts init container read (config, the admin).
*/}}
{{- define "visionops.mlflowAuthEnv" -}}
- name: MLFLOW_AUTH_CONFIG_PATH
  value: /etc/visionops/mlflow/basic_auth.ini
- name: MLFLOW_AUTH_ADMIN_USERNAME
  value: {{ .Values.mlflow.auth.adminUsername | quote }}
- name: MLFLOW_AUTH_ADMIN_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "visionops.mlflowAuthSecretName" . }}
      key: admin
{{- end }}
