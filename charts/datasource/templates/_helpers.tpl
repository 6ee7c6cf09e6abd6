{{/*
Helpers shared by every template of this chart. The same set (with the chart's own prefix) exists
in every chart of the platform: see charts/README.md, "Chart conventions".
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "datasource.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: fullnameOverride, else the release name when it already contains the chart
name (the deployment guide's `helm install datasource ./datasource` gives exactly datasource), else
RELEASE-datasource. The Service carries this name, so other charts reach it as <fullname>:80 (port 8000 in the pod).
*/}}
{{- define "datasource.fullname" -}}
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
{{- define "datasource.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object. `app` is kept next to the app.kubernetes.io/* set because the deployment
guide selects by it (`kubectl delete pvc -l "app in (...)"`).
*/}}
{{- define "datasource.labels" -}}
helm.sh/chart: {{ include "datasource.chart" . }}
{{ include "datasource.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops-platform
app: {{ include "datasource.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: stable for the life of a release (never add a version here). Other charts'
NetworkPolicies admit these pods by app.kubernetes.io/name alone.
*/}}
{{- define "datasource.selectorLabels" -}}
app.kubernetes.io/name: {{ include "datasource.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* image reference from an image block {repository, tag}. */}}
{{- define "datasource.image" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{/* Pod-level scheduling and security fields shared by every pod of this chart. */}}
{{- define "datasource.podSpecCommon" -}}
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
{{- define "datasource.containerPort" -}}
8000
{{- end }}

{{/*
Labels that pick out this release's own `helm test` pod (templates/tests/); the NetworkPolicy
admits exactly these. The chart name is among them because the umbrella chart gives every
dependency the same release name: another chart's test pod is not admitted.
*/}}
{{- define "datasource.testSelectorLabels" -}}
{{ include "datasource.selectorLabels" . }}
app.kubernetes.io/component: test
{{- end }}
