{{/*
Helpers shared by every template of this chart. The same set (with the chart's own prefix) exists
in every chart of the platform: see charts/README.md, "Chart conventions".
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "mlflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: fullnameOverride, else the release name when it already contains the chart
name (the deployment guide's `helm install mlflow ./mlflow` gives exactly mlflow), else RELEASE-mlflow.
The Service carries this name, so other charts reach it as <fullname>:<port>.
*/}}
{{- define "mlflow.fullname" -}}
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

{{/* chart-version, as used by the helm.sh/chart label. */}}
{{- define "mlflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object. `app` is kept next to the app.kubernetes.io/* set because the deployment
guide selects by it (`kubectl delete pvc -l "app in (...)"`).
*/}}
{{- define "mlflow.labels" -}}
helm.sh/chart: {{ include "mlflow.chart" . }}
{{ include "mlflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops-platform
app: {{ include "mlflow.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: stable for the life of a release (never add a version here). */}}
{{- define "mlflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* image reference from an image block {repository, tag}. */}}
{{- define "mlflow.image" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{/* Pod-level scheduling and security fields shared by every pod of this chart. */}}
{{- define "mlflow.podSpecCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Host headers the server accepts (MLflow 3 refuses others, against DNS rebinding). Passing
--allowed-hosts replaces MLflow's defaults (loopback, private networks), so they are repeated,
next to the Service's names (mlflow, mlflow:5000, mlflow.mlops.svc.cluster.local:5000, ...) and
server.allowedHosts. Same list as src/mlops_platform/local/mlflow_server.py builds locally.
*/}}
{{- define "mlflow.allowedHosts" -}}
{{- $name := include "mlflow.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $hosts := list "localhost" "localhost:*" "127.0.0.1" "127.0.0.1:*" "[::1]" "[[]::1]:*" $name (printf "%s:*" $name) (printf "%s.%s" $name $ns) (printf "%s.%s:*" $name $ns) (printf "%s.%s.svc*" $name $ns) "10.*" "192.168.*" }}
{{- range $n := untilStep 16 32 1 }}
{{- $hosts = append $hosts (printf "172.%d.*" $n) }}
{{- end }}
{{- concat $hosts .Values.server.allowedHosts | join "," }}
{{- end }}

{{/* Environment shared by the server and the db-upgrade init container. */}}
{{- define "mlflow.env" -}}
- name: DB_HOST
  value: {{ .Values.database.host | quote }}
- name: DB_PORT
  value: {{ .Values.database.port | quote }}
- name: DB_NAME
  value: {{ .Values.database.name | quote }}
- name: DB_USER
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.existingSecret }}
      key: {{ .Values.auth.dbUsernameKey }}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.existingSecret }}
      key: {{ .Values.auth.dbPasswordKey }}
# Kubernetes expands $(VAR) from the variables above; the password never appears in the spec.
- name: MLFLOW_BACKEND_STORE_URI
  value: {{ printf "%s://$(DB_USER):$(DB_PASSWORD)@$(DB_HOST):$(DB_PORT)/$(DB_NAME)" .Values.database.driver | quote }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.existingSecret }}
      key: {{ .Values.auth.s3AccessKeyKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.existingSecret }}
      key: {{ .Values.auth.s3SecretKeyKey }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ .Values.artifacts.s3EndpointUrl | quote }}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.artifacts.region | quote }}
# Path-style S3 addressing: one Service name, no bucket-per-hostname DNS.
- name: MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE
  value: path
- name: AWS_EC2_METADATA_DISABLED
  value: "true"
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
# The job runner (GenAI scorers, prompt optimisation) is unused and costs ~1 GB of workers.
- name: MLFLOW_SERVER_ENABLE_JOB_EXECUTION
  value: "false"
- name: HOME
  value: /tmp
{{- end }}

{{/*
The port the server listens on inside its pod: the container port the Service targets, and the
port the NetworkPolicy admits (a policy matches pod ports, after the Service's translation, so it
does not follow service.port). Change it here only.
*/}}
{{- define "mlflow.containerPort" -}}5000{{- end }}

{{/*
Labels that pick out this release's own `helm test` pod (templates/tests/); the NetworkPolicy
admits exactly these. The chart name is among them because the umbrella chart gives every
dependency the same release name: another chart's test pod is not admitted.
*/}}
{{- define "mlflow.testSelectorLabels" -}}
{{ include "mlflow.selectorLabels" . }}
app.kubernetes.io/component: test
{{- end }}
