{{/*
One Airflow Deployment (scheduler, dag-processor, triggerer, Celery worker), from a dict:
  root         the chart context ($)
  component    name suffix and app.kubernetes.io/component (scheduler, dag-processor, ...)
  values       the component's values (replicas, resources, livenessProbe, readinessProbe)
  command      the Airflow command, run as `bash -c "exec airflow ..."` (no image entrypoint)
  probe        the command of the exec liveness/readiness probes
  ports        container ports: list of dicts {name, port}
  podTemplate  mount the KubernetesExecutor pod template and use the scheduler's ServiceAccount
  termination  terminationGracePeriodSeconds (optional)
Every component here reads DAG files, so each gets git-sync (init container + sidecar) when
gitSync.enabled.
*/}}
{{- define "airflow.componentDeployment" -}}
{{- $root := .root }}
{{- $v := .values }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "airflow.fullname" $root }}-{{ .component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "airflow.componentLabels" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  replicas: {{ $v.replicas }}
  selector:
    matchLabels:
      {{- include "airflow.componentSelector" (dict "root" $root "component" .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "airflow.componentLabels" (dict "root" $root "component" .component) | nindent 8 }}
      {{- if or $root.Values.podAnnotations .podTemplate }}
      annotations:
        {{- if .podTemplate }}
        checksum/pod-template: {{ include (print $root.Template.BasePath "/configmap-pod-template.yaml") $root | sha256sum }}
        {{- end }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
    spec:
      {{- if .podTemplate }}
      # KubernetesExecutor: the scheduler creates, watches and deletes the task pods.
      serviceAccountName: {{ include "airflow.schedulerServiceAccountName" $root }}
      automountServiceAccountToken: true
      {{- else }}
      automountServiceAccountToken: false
      {{- end }}
      enableServiceLinks: false
      {{- with .termination }}
      terminationGracePeriodSeconds: {{ . }}
      {{- end }}
      {{- include "airflow.podSpecCommon" $root | nindent 6 }}
      {{- $init := include "airflow.initContainers" (dict "root" $root "dags" true) }}
      {{- if trim $init }}
      initContainers:
        {{- $init | trim | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "airflow.image" $root.Values.image }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["bash", "-c"]
          args: [{{ printf "exec %s" .command | quote }}]
          env:
            {{- include "airflow.env" $root | nindent 12 }}
          {{- with .ports }}
          ports:
            {{- range . }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          {{- end }}
          livenessProbe:
            {{- include "airflow.execProbe" (dict "command" .probe "timing" $v.livenessProbe) | nindent 12 }}
          readinessProbe:
            {{- include "airflow.execProbe" (dict "command" .probe "timing" $v.readinessProbe) | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "airflow.volumeMounts" (dict "root" $root "dags" true "podTemplate" .podTemplate) | nindent 12 }}
        {{- if $root.Values.gitSync.enabled }}
        {{- include "airflow.gitSyncContainer" (dict "root" $root "init" false) | nindent 8 }}
        {{- end }}
      volumes:
        {{- include "airflow.volumes" (dict "root" $root "dags" true "podTemplate" .podTemplate "persistentLogs" $root.Values.persistence.enabled) | nindent 8 }}
{{- end }}
