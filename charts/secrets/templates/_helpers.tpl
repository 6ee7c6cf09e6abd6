{{/*
Helpers shared by every template of this chart. The same set (with the chart's own prefix) exists
in every chart of the platform: see charts/README.md, "Chart conventions".
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "secrets.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: fullnameOverride, else the release name when it already contains the chart
name (the deployment guide's `helm install secrets ./secrets` gives exactly secrets), else RELEASE-secrets.
The Service carries this name, so other charts reach it as <fullname>:<port>.
*/}}
{{- define "secrets.fullname" -}}
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
{{- define "secrets.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object. `app` is kept next to the app.kubernetes.io/* set because the deployment
guide selects by it (`kubectl delete pvc -l "app in (...)"`).
*/}}
{{- define "secrets.labels" -}}
helm.sh/chart: {{ include "secrets.chart" . }}
{{ include "secrets.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops-platform
app: {{ include "secrets.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: stable for the life of a release (never add a version here). */}}
{{- define "secrets.selectorLabels" -}}
app.kubernetes.io/name: {{ include "secrets.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
One credential: the value given in values; else the value already stored in the cluster (lookup,
so `helm upgrade` keeps it); else a new random one. Each credential is computed once per render
and reused wherever it appears, so copies in several Secrets always agree.
Args: dict "root" $ "secret" SECRET-NAME "key" KEY "given" VALUE ["kind" "fernet"]
*/}}
{{- define "secrets.value" -}}
{{- if .given }}
{{- .given }}
{{- else }}
{{- $stored := "" }}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret }}
{{- if and $existing $existing.data }}
{{- $stored = index $existing.data .key | default "" | b64dec }}
{{- end }}
{{- if $stored }}
{{- $stored }}
{{- else if eq (.kind | default "") "fernet" }}
{{- randAlphaNum 32 | b64enc }}
{{- else }}
{{- randAlphaNum (int .root.Values.generatedLength) }}
{{- end }}
{{- end }}
{{- end }}

{{/* metadata shared by every Secret. Args: dict "root" $ "name" NAME "consumer" CHART */}}
{{- define "secrets.metadata" -}}
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "secrets.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .consumer }}
  annotations:
    mlops.io/consumer: {{ .consumer }}
    {{- if .root.Values.keepOnUninstall }}
    helm.sh/resource-policy: keep
    {{- end }}
{{- end }}
