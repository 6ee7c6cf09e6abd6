{{/*
Helpers shared by every template of this chart. The same set (with the chart's own prefix) exists
in every chart of the platform: see charts/README.md, "Chart conventions".
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "streamlit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: fullnameOverride, else the release name when it already contains the chart
name (the deployment guide's `helm install streamlit ./streamlit` gives exactly streamlit), else
RELEASE-streamlit. The Service carries this name, so other charts reach it as <fullname>:8501.
*/}}
{{- define "streamlit.fullname" -}}
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
{{- define "streamlit.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object. `app` is kept next to the app.kubernetes.io/* set because the deployment
guide selects by it (`kubectl delete pvc -l "app in (...)"`).
*/}}
{{- define "streamlit.labels" -}}
helm.sh/chart: {{ include "streamlit.chart" . }}
{{ include "streamlit.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops-platform
app: {{ include "streamlit.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: stable for the life of a release (never add a version here). Other charts'
NetworkPolicies admit these pods by app.kubernetes.io/name alone.
*/}}
{{- define "streamlit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamlit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The loop exporter is a second server of the release with labels of its own: its
app.kubernetes.io/name is <name>-exporter, so the UI's Deployment and Service (which select
streamlit.selectorLabels, unchanged since before the exporter: a Deployment's selector is
immutable, and `helm upgrade` of an older release must keep working) never take its pods, and its
own selector never takes the UI's. Other charts' NetworkPolicies admit it by that name (postgres'
allowedClients), and it has a NetworkPolicy of its own (templates/exporter-networkpolicy.yaml).
*/}}
{{- define "streamlit.exporterName" -}}
{{- printf "%s-exporter" (include "streamlit.name" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "streamlit.exporterSelectorLabels" -}}
app.kubernetes.io/name: {{ include "streamlit.exporterName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The exporter's labels: the standard set with its own name (`app` stays the chart's, as the
guide selects by it) and component exporter. */}}
{{- define "streamlit.exporterLabels" -}}
helm.sh/chart: {{ include "streamlit.chart" . }}
{{ include "streamlit.exporterSelectorLabels" . }}
app.kubernetes.io/component: exporter
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops-platform
app: {{ include "streamlit.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The exporter's Deployment, Service and NetworkPolicy: <fullname>-exporter (Prometheus' scrape target). */}}
{{- define "streamlit.exporterFullname" -}}
{{- printf "%s-exporter" (include "streamlit.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{/* Environment both servers read the stores with: the read-only `reader` role of the Secret,
and the two database URLs built from it ($(VAR) is expanded by Kubernetes, so the password never
appears in the spec). */}}
{{- define "streamlit.databaseEnv" -}}
{{- $db := .Values.database -}}
# The read-only `reader` role: the pod can show everything and change nothing.
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
- name: MLOPS_RAW_DB_URL
  value: {{ printf "%s://$(DB_USER):$(DB_PASSWORD)@%s:%d/%s" $db.driver $db.host (int $db.port) $db.rawName | quote }}
- name: MLOPS_CLEAN_DB_URL
  value: {{ printf "%s://$(DB_USER):$(DB_PASSWORD)@%s:%d/%s" $db.driver $db.host (int $db.port) $db.cleanName | quote }}
{{- end }}

{{/* image reference from an image block {repository, tag}. */}}
{{- define "streamlit.image" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{/* Pod-level scheduling and security fields shared by every pod of this chart. */}}
{{- define "streamlit.podSpecCommon" -}}
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

{{/* The port the server listens on in the pod: one number for the args, the container port, the
probes (by name) and the NetworkPolicy (which matches pod ports, after the Service's translation). */}}
{{- define "streamlit.containerPort" -}}
8501
{{- end }}

{{/*
Labels that pick out this release's own `helm test` pod (templates/tests/); the NetworkPolicy
admits exactly these. The chart name is among them because the umbrella chart gives every
dependency the same release name: another chart's test pod is not admitted.
*/}}
{{- define "streamlit.testSelectorLabels" -}}
{{ include "streamlit.selectorLabels" . }}
app.kubernetes.io/component: test
{{- end }}
