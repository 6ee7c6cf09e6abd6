{{/*
The umbrella chart renders no object of its own beyond NOTES.txt: every object comes from a
dependency, with that chart's helpers. These helpers exist so this chart follows the same
conventions (charts/README.md) should it ever grow its own objects.
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "mlops.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release name: this chart's objects (none today) would be named after it. */}}
{{- define "mlops.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* chart-version, as used by the helm.sh/chart label. */}}
{{- define "mlops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of this chart. */}}
{{- define "mlops.labels" -}}
helm.sh/chart: {{ include "mlops.chart" . }}
{{ include "mlops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops-platform
app: {{ include "mlops.name" . }}
{{- end }}

{{/* Selector labels. */}}
{{- define "mlops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Whether dependency NAME is enabled (conditions default to on). */}}
{{- define "mlops.enabled" -}}
{{- $values := index .root.Values .name | default dict }}
{{- if ne (toString (index $values "enabled")) "false" }}true{{ end }}
{{- end }}
