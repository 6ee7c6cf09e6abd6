{{/*
Helpers shared by every template of this chart. The same set (with the chart's own prefix) exists
in every chart of the platform: see charts/README.md, "Chart conventions".
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "postgres.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: fullnameOverride, else the release name when it already contains the chart
name (the deployment guide's `helm install postgres ./postgres` gives exactly postgres), else RELEASE-postgres.
The Service carries this name, so other charts reach it as <fullname>:<port>.
*/}}
{{- define "postgres.fullname" -}}
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
{{- define "postgres.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object. `app` is kept next to the app.kubernetes.io/* set because the deployment
guide selects by it (`kubectl delete pvc -l "app in (...)"`).
*/}}
{{- define "postgres.labels" -}}
helm.sh/chart: {{ include "postgres.chart" . }}
{{ include "postgres.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops-platform
app: {{ include "postgres.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: stable for the life of a release (never add a version here). */}}
{{- define "postgres.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postgres.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* image reference from an image block {repository, tag}. */}}
{{- define "postgres.image" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{/* Pod-level scheduling and security fields shared by every pod of this chart. */}}
{{- define "postgres.podSpecCommon" -}}
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

{{/* Environment-variable stem of a database's credentials: rawdata -> DB_RAWDATA. */}}
{{- define "postgres.dbEnv" -}}
{{- printf "DB_%s" (upper .) }}
{{- end }}

{{/*
The port the server listens on inside its pod: the container port the Service targets, and the
port the NetworkPolicy admits (a policy matches pod ports, after the Service's translation, so it
does not follow service.port). Change it here only.
*/}}
{{- define "postgres.containerPort" -}}5432{{- end }}

{{/*
Labels that pick out this release's own `helm test` pod (templates/tests/); the NetworkPolicy
admits exactly these. The chart name is among them because the umbrella chart gives every
dependency the same release name: another chart's test pod is not admitted.
*/}}
{{- define "postgres.testSelectorLabels" -}}
{{ include "postgres.selectorLabels" . }}
app.kubernetes.io/component: test
{{- end }}
