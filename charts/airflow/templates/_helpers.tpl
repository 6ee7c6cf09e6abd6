{{/*
Helpers shared by every template of this chart. The same set (with the chart's own prefix) exists
in every chart of the platform: see charts/README.md, "Chart conventions".
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "airflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: fullnameOverride, else the release name when it already contains the chart
name (the deployment guide's `helm install airflow ./airflow` gives exactly airflow), else
RELEASE-airflow. Objects are named <fullname>-<component>; the api-server's Service is
<fullname>-webserver (airflow-webserver, the guide's port-forward target).
*/}}
{{- define "airflow.fullname" -}}
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
{{- define "airflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object. `app` is kept next to the app.kubernetes.io/* set because the deployment
guide selects by it (`kubectl delete pvc -l "app in (...)"`).
*/}}
{{- define "airflow.labels" -}}
helm.sh/chart: {{ include "airflow.chart" . }}
{{ include "airflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops-platform
app: {{ include "airflow.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: stable for the life of a release (never add a version here). */}}
{{- define "airflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "airflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: dict "root" $ "component" "scheduler". */}}
{{- define "airflow.componentLabels" -}}
{{ include "airflow.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector of one component's pods: dict "root" $ "component" "scheduler". */}}
{{- define "airflow.componentSelector" -}}
{{ include "airflow.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* image reference from an image block {repository, tag}. */}}
{{- define "airflow.image" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{/* Pod-level scheduling and security fields shared by every pod of this chart. */}}
{{- define "airflow.podSpecCommon" -}}
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

{{/* Name of the api-server's Service (the guide's `svc/airflow-webserver`). */}}
{{- define "airflow.webserverName" -}}
{{- printf "%s-webserver" (include "airflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the statsd-exporter's Deployment, Service, ConfigMap and NetworkPolicy
(metrics.enabled): airflow-statsd. */}}
{{- define "airflow.statsdName" -}}
{{- printf "%s-statsd" (include "airflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The statsd-exporter is a second server of the release with labels of its own: its
app.kubernetes.io/name is <name>-statsd, so the Airflow policy (which selects airflow.selectorLabels,
every Airflow pod) does not select it, no Airflow Deployment's selector takes its pods, and its own
selector takes no Airflow pod. Other charts' policies admit Airflow by name `airflow`, so the
exporter is not admitted to postgres or redis; it has a NetworkPolicy of its own
(templates/statsd-networkpolicy.yaml).
*/}}
{{- define "airflow.statsdAppName" -}}
{{- printf "%s-statsd" (include "airflow.name" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{- define "airflow.statsdSelectorLabels" -}}
app.kubernetes.io/name: {{ include "airflow.statsdAppName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The exporter's labels: the standard set with its own name (`app` stays the chart's, as the
guide selects by it) and component exporter. */}}
{{- define "airflow.statsdLabels" -}}
helm.sh/chart: {{ include "airflow.chart" . }}
{{ include "airflow.statsdSelectorLabels" . }}
app.kubernetes.io/component: exporter
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops-platform
app: {{ include "airflow.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* ServiceAccount of the scheduler with KubernetesExecutor (it creates the task pods). */}}
{{- define "airflow.schedulerServiceAccountName" -}}
{{- printf "%s-scheduler" (include "airflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* git-sync layout: the shared emptyDir is mounted at this root in every container. */}}
{{- define "airflow.gitSyncRoot" -}}/git{{- end }}
{{- define "airflow.gitSyncLink" -}}repo{{- end }}

{{/*
DAGS_FOLDER: <root>/<link>/<subPath> of git-sync when enabled (the link is switched atomically to
each new checkout), else the DAGs baked into the image.
*/}}
{{- define "airflow.dagsFolder" -}}
{{- if .Values.gitSync.enabled }}
{{- $sub := trimAll "/" .Values.gitSync.subPath }}
{{- if $sub }}
{{- printf "%s/%s/%s" (include "airflow.gitSyncRoot" .) (include "airflow.gitSyncLink" .) $sub }}
{{- else }}
{{- printf "%s/%s" (include "airflow.gitSyncRoot" .) (include "airflow.gitSyncLink" .) }}
{{- end }}
{{- else }}
{{- print "/opt/airflow/dags" }}
{{- end }}
{{- end }}

{{/*
"true" when the migration Job runs before the Deployments exist (a pre-install hook). Otherwise
(the umbrella's post-install) every Deployment waits for the migrations in an init container.
*/}}
{{- define "airflow.migrationsBeforeDeployments" -}}
{{- if has "pre-install" (splitList "," (nospace .Values.migrateJob.helmHook)) }}true{{- end }}
{{- end }}

{{/* A Secret key reference of the auth block: dict "root" $ "key" "dbPasswordKey". */}}
{{- define "airflow.secretRef" -}}
valueFrom:
  secretKeyRef:
    name: {{ .root.Values.auth.existingSecret }}
    key: {{ index .root.Values.auth .key }}
{{- end }}

{{/*
The environment of every Airflow container (Deployments, Jobs, init containers and the
KubernetesExecutor pod template): Airflow's whole configuration as AIRFLOW__SECTION__KEY and the
platform's MLOPS_* settings. Credentials are secretKeyRefs, defined first, and URLs use them
through Kubernetes' $(VAR) expansion, so no password is ever written in a pod spec.
*/}}
{{- define "airflow.env" -}}
{{- $webserver := include "airflow.webserverName" . }}
{{- $db := .Values.database }}
{{- $stores := .Values.mlops.stores -}}
- name: AIRFLOW_DB_USER
  {{- include "airflow.secretRef" (dict "root" . "key" "dbUsernameKey") | nindent 2 }}
- name: AIRFLOW_DB_PASSWORD
  {{- include "airflow.secretRef" (dict "root" . "key" "dbPasswordKey") | nindent 2 }}
- name: RAW_DB_USER
  {{- include "airflow.secretRef" (dict "root" . "key" "rawdataUsernameKey") | nindent 2 }}
- name: RAW_DB_PASSWORD
  {{- include "airflow.secretRef" (dict "root" . "key" "rawdataPasswordKey") | nindent 2 }}
- name: CLEAN_DB_USER
  {{- include "airflow.secretRef" (dict "root" . "key" "cleandataUsernameKey") | nindent 2 }}
- name: CLEAN_DB_PASSWORD
  {{- include "airflow.secretRef" (dict "root" . "key" "cleandataPasswordKey") | nindent 2 }}
# --- Airflow ---------------------------------------------------------------------------------
# An emptyDir: Airflow writes its (overridden) default airflow.cfg there on a read-only root.
- name: AIRFLOW_CONFIG
  value: /opt/airflow/config/airflow.cfg
- name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
  value: {{ printf "%s://$(AIRFLOW_DB_USER):$(AIRFLOW_DB_PASSWORD)@%s:%v/%s" $db.driver $db.host $db.port $db.name | quote }}
- name: AIRFLOW__CORE__EXECUTOR
  value: {{ .Values.executor | quote }}
{{- if eq .Values.executor "CeleryExecutor" }}
- name: REDIS_PASSWORD
  {{- include "airflow.secretRef" (dict "root" . "key" "redisPasswordKey") | nindent 2 }}
- name: AIRFLOW__CELERY__BROKER_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:%v/%v" .Values.redis.host .Values.redis.port .Values.redis.db | quote }}
- name: AIRFLOW__CELERY__RESULT_BACKEND
  value: {{ printf "db+%s://$(AIRFLOW_DB_USER):$(AIRFLOW_DB_PASSWORD)@%s:%v/%s" $db.driver $db.host $db.port $db.name | quote }}
- name: AIRFLOW__CELERY__WORKER_CONCURRENCY
  value: {{ .Values.workers.concurrency | quote }}
{{- end }}
{{- if eq .Values.executor "KubernetesExecutor" }}
- name: AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE
  value: {{ .Release.Namespace | quote }}
- name: AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE
  value: /opt/airflow/pod_templates/pod_template.yaml
- name: AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS
  value: "True"
{{- end }}
- name: AIRFLOW__CORE__FERNET_KEY
  {{- include "airflow.secretRef" (dict "root" . "key" "fernetKeyKey") | nindent 2 }}
- name: AIRFLOW__API__SECRET_KEY
  {{- include "airflow.secretRef" (dict "root" . "key" "apiSecretKeyKey") | nindent 2 }}
- name: AIRFLOW__API_AUTH__JWT_SECRET
  {{- include "airflow.secretRef" (dict "root" . "key" "jwtSecretKey") | nindent 2 }}
# Workers and task pods report to the api-server's execution API through its Service.
- name: AIRFLOW__CORE__EXECUTION_API_SERVER_URL
  value: {{ printf "http://%s:%v/execution/" $webserver .Values.service.port | quote }}
# FAB auth manager (apache-airflow-providers-fab, in requirements.lock): users in the metadata
# database, `airflow users create`; `airflow db migrate` migrates its tables too.
- name: AIRFLOW__CORE__AUTH_MANAGER
  value: airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager
- name: AIRFLOW__FAB__CONFIG_FILE
  value: /opt/airflow/config/webserver_config.py
- name: AIRFLOW__CORE__LOAD_EXAMPLES
  value: "False"
- name: AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION
  value: {{ ternary "True" "False" .Values.dags.pausedAtCreation | quote }}
- name: AIRFLOW__CORE__DAGS_FOLDER
  value: {{ include "airflow.dagsFolder" . | quote }}
# Pods are reached by IP (no per-pod DNS name): the api-server fetches task logs from there.
- name: AIRFLOW__CORE__HOSTNAME_CALLABLE
  value: airflow.utils.net.get_host_ip_address
- name: AIRFLOW__LOGGING__BASE_LOG_FOLDER
  value: /opt/airflow/logs
- name: AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT
  value: "8793"
- name: AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT
  value: "8794"
- name: AIRFLOW__API__PORT
  value: "8080"
- name: AIRFLOW__API__WORKERS
  value: {{ .Values.apiServer.workers | quote }}
{{- if .Values.metrics.enabled }}
# Airflow's own metrics ([metrics], docs/metrics.md "Metrics of Airflow"): StatsD over UDP to the
# statsd-exporter <fullname>-statsd, which turns the dotted names into labelled Prometheus metrics
# for the prometheus chart (scrape.airflow). Legacy names carry the DAG and task ids in the name,
# which is what the exporter's mapping (files/statsd-mapping.yml) reads the labels from.
- name: AIRFLOW__METRICS__STATSD_ON
  value: "True"
- name: AIRFLOW__METRICS__STATSD_HOST
  value: {{ include "airflow.statsdName" . | quote }}
- name: AIRFLOW__METRICS__STATSD_PORT
  value: {{ .Values.metrics.statsdPort | quote }}
- name: AIRFLOW__METRICS__STATSD_PREFIX
  value: airflow
- name: AIRFLOW__METRICS__LEGACY_NAMES_ON
  value: "True"
{{- end }}
# Caches of libraries (matplotlib for SHAP plots, ...) go to the writable /tmp.
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
# --- platform settings (src/mlops_platform/settings.py) --------------------------------------
- name: MLOPS_RAW_DB_URL
  value: {{ printf "%s://$(RAW_DB_USER):$(RAW_DB_PASSWORD)@%s:%v/%s" $stores.driver $stores.host $stores.port $stores.rawDatabase | quote }}
- name: MLOPS_CLEAN_DB_URL
  value: {{ printf "%s://$(CLEAN_DB_USER):$(CLEAN_DB_PASSWORD)@%s:%v/%s" $stores.driver $stores.host $stores.port $stores.cleanDatabase | quote }}
- name: MLOPS_MLFLOW_TRACKING_URI
  value: {{ .Values.mlops.mlflowTrackingUri | quote }}
- name: MLOPS_API_URL
  value: {{ .Values.mlops.apiUrl | quote }}
- name: MLOPS_API_TOKEN
  {{- include "airflow.secretRef" (dict "root" . "key" "hookTokenKey") | nindent 2 }}
- name: MLOPS_DATASOURCE_URL
  value: {{ .Values.mlops.datasourceUrl | quote }}
- name: MLOPS_DATA_SCHEDULE
  value: {{ .Values.mlops.dataSchedule | quote }}
- name: MLOPS_GROUP_NUMBER
  value: {{ .Values.mlops.groupNumber | quote }}
- name: MLOPS_DAY
  value: {{ .Values.mlops.day | quote }}
{{- range $name, $value := .Values.mlops.extraEnv }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Mounts of an Airflow container: dict "root" $ "dags" bool (reads DAG files) "podTemplate" bool.
Writable paths on the read-only root: logs, config (airflow.cfg), /tmp.
*/}}
{{- define "airflow.volumeMounts" -}}
- name: logs
  mountPath: /opt/airflow/logs
- name: config
  mountPath: /opt/airflow/config
- name: tmp
  mountPath: /tmp
{{- if and .dags .root.Values.gitSync.enabled }}
- name: dags
  mountPath: {{ include "airflow.gitSyncRoot" .root }}
  readOnly: true
{{- end }}
{{- if .podTemplate }}
- name: pod-template
  mountPath: /opt/airflow/pod_templates
  readOnly: true
{{- end }}
{{- end }}

{{/*
Volumes of a pod: dict "root" $ "dags" bool "podTemplate" bool "persistentLogs" bool.
Jobs never use the logs claim (a pre-install hook runs before the claim exists).
*/}}
{{- define "airflow.volumes" -}}
- name: logs
{{- if .persistentLogs }}
  persistentVolumeClaim:
    claimName: {{ include "airflow.fullname" .root }}-logs
{{- else }}
  emptyDir: {}
{{- end }}
- name: config
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if and .dags .root.Values.gitSync.enabled }}
- name: dags
  emptyDir: {}
{{- end }}
{{- if .podTemplate }}
- name: pod-template
  configMap:
    name: {{ include "airflow.fullname" .root }}-pod-template
{{- end }}
{{- end }}

{{/*
A git-sync v4 container: dict "root" $ "init" bool. The init container clones once
(--one-time) so the DAGs are there before Airflow starts; the sidecar keeps pulling every
gitSync.period and answers its probes on gitSync.httpPort.
*/}}
{{- define "airflow.gitSyncContainer" -}}
{{- $gs := .root.Values.gitSync -}}
{{- if not $gs.repository }}
{{- fail "gitSync.repository is empty: git-sync would have nothing to clone and Airflow's pods would wait in Init forever. Set the Git repository that holds dags/ (in the umbrella chart: airflow.gitSync.repository), e.g. --set gitSync.repository=https://github.com/you/mlops-platform.git --set gitSync.branch=main (make k8s-install passes this checkout's origin and branch), or use the DAGs baked into the image with --set gitSync.enabled=false." }}
{{- end }}
- name: {{ if .init }}git-sync-init{{ else }}git-sync{{ end }}
  image: {{ include "airflow.image" $gs.image }}
  imagePullPolicy: {{ $gs.image.pullPolicy }}
  args:
    - --repo={{ $gs.repository }}
    - --ref={{ $gs.branch }}
    - --root={{ include "airflow.gitSyncRoot" .root }}
    - --link={{ include "airflow.gitSyncLink" .root }}
    - --depth={{ $gs.depth }}
    {{- if .init }}
    - --one-time
    {{- else }}
    - --period={{ $gs.period }}
    - --max-failures={{ $gs.maxFailures }}
    - --http-bind=:{{ $gs.httpPort }}
    {{- end }}
  {{- with $gs.credentialsSecret }}
  # A private repository: git-sync v4 reads these variables as --username / --password.
  env:
    - name: GITSYNC_USERNAME
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: username
    - name: GITSYNC_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: password
  {{- end }}
  {{- if not .init }}
  ports:
    - name: git-sync
      containerPort: {{ $gs.httpPort }}
      protocol: TCP
  livenessProbe:
    httpGet:
      path: /
      port: git-sync
    initialDelaySeconds: 10
    periodSeconds: 30
    timeoutSeconds: 5
    failureThreshold: 5
  readinessProbe:
    httpGet:
      path: /
      port: git-sync
    periodSeconds: 30
    timeoutSeconds: 5
    failureThreshold: 3
  {{- end }}
  resources:
    {{- toYaml $gs.resources | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: {{ $gs.runAsUser }}
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
  volumeMounts:
    - name: dags
      mountPath: {{ include "airflow.gitSyncRoot" .root }}
    # git-sync's HOME is /tmp (its git config lives there).
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/*
Init container of every Deployment when the migrations run after the Deployments are created
(post-install hook, the umbrella chart): waits until `airflow db migrate` has finished.
*/}}
{{- define "airflow.waitForMigrations" -}}
- name: wait-for-migrations
  image: {{ include "airflow.image" .Values.image }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["bash", "-c"]
  args: ["exec airflow db check-migrations --migration-wait-timeout {{ .Values.migrateJob.waitTimeoutSeconds }}"]
  env:
    {{- include "airflow.env" . | nindent 4 }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    {{- include "airflow.volumeMounts" (dict "root" .) | nindent 4 }}
{{- end }}

{{/*
Init containers of a Deployment: dict "root" $ "dags" bool. Migrations first (when they may not
have run yet), then the first git-sync clone.
*/}}
{{- define "airflow.initContainers" -}}
{{- if not (include "airflow.migrationsBeforeDeployments" .root) }}
{{ include "airflow.waitForMigrations" .root }}
{{- end }}
{{- if and .dags .root.Values.gitSync.enabled }}
{{ include "airflow.gitSyncContainer" (dict "root" .root "init" true) }}
{{- end }}
{{- end }}

{{/*
An exec probe running a command (from the image's PATH) quietly, through a shell so that
$(hostname) expands: dict "command" "airflow jobs check ..." "timing" $probeValues.
*/}}
{{- define "airflow.execProbe" -}}
exec:
  command:
    - sh
    - -c
    - AIRFLOW__LOGGING__LOGGING_LEVEL=ERROR exec {{ .command }}
{{- toYaml .timing | nindent 0 }}
{{- end }}

{{/*
Labels that pick out this release's own `helm test` pod (templates/tests/); the NetworkPolicy
admits exactly these. The chart name is among them because the umbrella chart gives every
dependency the same release name: another chart's test pod is not admitted.
*/}}
{{- define "airflow.testSelectorLabels" -}}
{{ include "airflow.selectorLabels" . }}
app.kubernetes.io/component: test
{{- end }}
