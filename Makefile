# The two commands that matter: `make up` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up down status demo test lint format bench install clean

# The lock pins every dependency of the package and its `airflow` extra: the image installs it
# exactly, and the test venv is constrained by it, so tests run the versions the image ships.
# uv installs it: the same 277 distributions as pip, faster (bench/install.py, docs/BENCHMARKS.md).
# Bytecode is compiled at install, as pip does: with PYTHONDONTWRITEBYTECODE set (CI machines
# set it) a venv without .pyc files compiles every module it imports, in every process, every
# time (the chart tests ran 1.6x slower). Pinned so `make lock` resolves the
# same way everywhere. Where uv cannot reach an index pip can (a proxy only pip is set up for),
# pip installs the same set.
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip install --python $(PY) --quiet --compile-bytecode -c requirements.lock -e ".[dev]" \
	  || { echo "install: uv failed (above); installing with pip instead, which takes minutes"; \
	       $(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev]"; }
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with its test tools

# Prometheus is optional: installed where apt-get can (root or passwordless sudo), otherwise
# `mlops up` says how and runs everything else.
up: install ## Start the whole platform locally (PostgreSQL, S3, MLflow, simulator, API, UI, exporter, Prometheus, Airflow) with a first model
	@scripts/ensure-tools.sh --prometheus || echo "make up: going on without a local Prometheus"
	$(VENV)/bin/mlops up

down: install ## Stop the local platform (data is kept)
	$(VENV)/bin/mlops down

status: install
	$(VENV)/bin/mlops status

demo: install ## The whole lifecycle, headless, in a temporary folder; prints a summary
	$(VENV)/bin/mlops demo

lint: install ## ruff: lint and formatting
	$(VENV)/bin/ruff check src tests dags bench
	$(VENV)/bin/ruff format --check src tests dags bench

# The image builds in the background during the chart tests: it mostly waits on downloads, they on
# one core (on a fresh 2-core machine both took 263 s, one after the other 438 s; docs/BENCHMARKS.md).
# The suites that start services wait until it is built.
test: install lint ## Set up everything and run the whole test suite
	@scripts/ensure-tools.sh >/dev/null
	@scripts/images.sh --start
	$(MAKE) --no-print-directory charts-test || { scripts/images.sh --stop; exit 1; }
	@scripts/images.sh --wait
	$(VENV)/bin/pytest --ignore=tests/charts --ignore=tests/images --ignore=tests/reliability
	$(MAKE) --no-print-directory reliability
	$(MAKE) --no-print-directory images-test

.PHONY: reliability
reliability: install ## Load, faults, fuzzing and security checks against a real local platform (docs/RELIABILITY.md)
	@scripts/ensure-tools.sh >/dev/null
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(VENV)/bin/pytest tests/reliability -m reliability -q

.PHONY: images images-test lock
images: ## Build mlops/platform:<version> (Docker when an engine answers, else buildah + podman)
	@scripts/images.sh

images-test: install images ## Run every pod spec of ours from the image under podman, as a kubelet would
	@scripts/images.sh --tools
	@scripts/ensure-tools.sh >/dev/null
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(VENV)/bin/pytest tests/images -rA -q

lock: install ## Re-pin requirements.lock from pyproject.toml (then commit it with the change)
	$(UV) pip compile pyproject.toml --extra airflow --universal --python-version 3.11 \
	  --no-header --quiet -o requirements.lock

.PHONY: charts-test
charts-test: install ## Helm charts: get helm/promtool, lint --strict, render (ci/required-values.yaml, + each ci/*.yaml), package, tests/charts
	@scripts/ensure-tools.sh
	@export PATH="$(CURDIR)/.tools/bin:$$PATH"; set -euo pipefail; \
	for chart in charts/*/; do \
	  name="$$(basename "$$chart")"; \
	  if grep -q '^dependencies:' "$$chart/Chart.yaml"; then helm dependency build "$$chart" --skip-refresh >/dev/null; fi; \
	  required=(); if [ -e "$${chart}ci/required-values.yaml" ]; then required=(-f "$${chart}ci/required-values.yaml"); fi; \
	  helm lint --strict "$$chart" -n mlops "$${required[@]}" >/dev/null || { helm lint --strict "$$chart" -n mlops "$${required[@]}"; exit 1; }; \
	  helm template "$$name" "$$chart" -n mlops "$${required[@]}" >/dev/null; \
	  for values in "$$chart"ci/*.yaml; do \
	    if [ -e "$$values" ]; then helm template "$$name" "$$chart" -n mlops "$${required[@]}" -f "$$values" >/dev/null; fi; \
	  done; \
	done; \
	rm -rf build/charts; helm package charts/*/ -d build/charts >/dev/null; \
	echo "charts: lint --strict, template and package OK for $$(ls build/charts | wc -l) charts (build/charts)"
	$(VENV)/bin/pytest tests/charts -q

format: install
	$(VENV)/bin/ruff check --fix src tests dags bench
	$(VENV)/bin/ruff format src tests dags bench

bench: install ## Benchmarks (key=value lines); figures go to docs/BENCHMARKS.md
	@command -v wrk >/dev/null || (apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq wrk)
	$(PY) bench/ingest.py
	$(PY) bench/train.py
	$(PY) bench/serve.py
	$(PY) bench/dag_parse.py
	$(PY) bench/local_platform.py
	$(PY) bench/images.py
	$(PY) bench/install.py

clean: ## Remove the virtualenv and caches (not the .mlops state folder)
	rm -rf $(VENV) .pytest_cache .ruff_cache

## Kubernetes (docs/deployment.md) ###############################################################
# The deployment guide's commands, from the repository root, against kubectl's current context:
#   make k8s-images k8s-install    build the image into minikube, install the three packages
#   make port-forward              every UI on localhost (Ctrl-C stops them all)
#   make k8s-test                  helm test: every server called by its Service name
#   make k8s-upgrade               helm upgrade every release, in the same order
#   make k8s-reset [CONFIRM=yes]   delete every release, volume and the namespace (asks first)
# tests/charts/test_deployment_guide.py checks that these recipes run exactly the commands of the
# guide's blocks marked `<!-- make TARGET -->`: change both together.
NAMESPACE ?= mlops
# How long `kubectl rollout status` waits for each workload (a first install pulls images).
K8S_TIMEOUT ?= 10m
# How long helm waits for a release's hook Jobs (minio's bucket, airflow's migrations): a first
# install pulls images, more than helm's default 5 minutes on a slow link.
HELM_TIMEOUT ?= 15m
# helm and kubectl from PATH, else the copies scripts/ensure-tools.sh puts in .tools/bin.
HELM ?= $(if $(shell command -v helm 2>/dev/null),helm,.tools/bin/helm)
KUBECTL ?= $(if $(shell command -v kubectl 2>/dev/null),kubectl,.tools/bin/kubectl)
MINIKUBE ?= minikube
# The repository and branch git-sync clones the DAGs from: this checkout's `origin` (an SSH address
# as HTTPS, since git-sync in the pods has no SSH key) and current branch. Exported: the recipes
# read them as shell variables, which is how the guide writes them.
GIT_REPO ?= $(shell git remote get-url origin 2>/dev/null | sed -E 's#^(ssh://)?git@([^:/]+)[:/]#https://\2/#')
GIT_BRANCH ?= $(shell git branch --show-current 2>/dev/null)
export GIT_REPO GIT_BRANCH
# A private repository: GIT_CREDENTIALS names a Secret with keys username and password (guide, step 3).
GIT_CREDENTIALS ?=
# GIT_SYNC=off: no Git at all, Airflow runs the DAGs baked into the image (gitSync.enabled=false).
GIT_SYNC ?= on
ifeq ($(GIT_SYNC),off)
AIRFLOW_DAGS = --set gitSync.enabled=false
else
AIRFLOW_DAGS = --set gitSync.repository="$$GIT_REPO" --set gitSync.branch="$$GIT_BRANCH"$(if $(GIT_CREDENTIALS), --set gitSync.credentialsSecret=$(GIT_CREDENTIALS))
endif

# The guide's checks after each package: every workload rolled out, then the pods at a glance.
define k8s_wait_package_1
	@echo "==> Waiting for package 1 (up to $(K8S_TIMEOUT) per workload)"
	$(KUBECTL) rollout status statefulset/postgres -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) rollout status deployment/redis -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) rollout status deployment/minio -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) get pods -n $(NAMESPACE)
endef
define k8s_wait_package_2
	@echo "==> Waiting for package 2 (up to $(K8S_TIMEOUT) per workload)"
	$(KUBECTL) rollout status deployment/mlflow -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) rollout status deployment/prometheus -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) rollout status deployment/grafana -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) get pods -n $(NAMESPACE)
endef
# fastapi is Ready before the first model too (GET /readyz: there is none to load yet).
define k8s_wait_package_3
	@echo "==> Waiting for package 3 (up to $(K8S_TIMEOUT) per workload)"
	$(KUBECTL) rollout status deployment/airflow-api-server -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) rollout status deployment/airflow-scheduler -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) rollout status deployment/airflow-dag-processor -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) rollout status deployment/airflow-triggerer -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) rollout status deployment/airflow-worker -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) rollout status deployment/airflow-statsd -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) rollout status deployment/fastapi -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) rollout status deployment/streamlit -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) rollout status deployment/streamlit-exporter -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) rollout status deployment/datasource -n $(NAMESPACE) --timeout=$(K8S_TIMEOUT)
	$(KUBECTL) get pods -n $(NAMESPACE)
endef

.PHONY: k8s-images k8s-install k8s-upgrade k8s-test k8s-reset port-forward

k8s-images: ## Build the platform image inside minikube (guide, step 2)
	@echo "==> Building mlops/platform:0.1.0 inside minikube's container runtime"
	$(MINIKUBE) image build -t mlops/platform:0.1.0 -f docker/Dockerfile .

# Before anything is installed: git-sync can clone GIT_REPO at GIT_BRANCH, or the Airflow pods
# would wait in Init forever.
define k8s_check_git
$(if $(filter off,$(GIT_SYNC)),@echo "==> GIT_SYNC=off: Airflow runs the DAGs baked into the image",
	@echo "==> git-sync source: $(or $(GIT_REPO),<none>) at $(or $(GIT_BRANCH),<none>)"
	@test -n "$$GIT_REPO" -a -n "$$GIT_BRANCH" || { echo "No git-sync source: this checkout has no 'origin' remote or no current branch. Set both, e.g. make $@ GIT_REPO=https://github.com/you/mlops-platform.git GIT_BRANCH=main (or GIT_SYNC=off: the DAGs baked into the image)." >&2; exit 2; }
	git ls-remote --exit-code "$$GIT_REPO" "$$GIT_BRANCH" >/dev/null || { echo "git ls-remote found no branch or tag '$$GIT_BRANCH' in $$GIT_REPO (or could not reach it), so neither could git-sync. Push the branch, or set GIT_REPO/GIT_BRANCH to a public repository and branch that hold dags/; a private one also needs gitSync.credentialsSecret (docs/deployment.md, step 3)." >&2; exit 2; })
endef

# `helm upgrade --install`: a release is installed the first time and upgraded after, so both
# targets can be run again after any failure, and a second run changes nothing.
k8s-install: ## Install every chart in the guide's three packages, waiting after each (step 3)
	$(k8s_check_git)
	@echo "==> Namespace $(NAMESPACE) (created when missing)"
	@$(KUBECTL) get namespace $(NAMESPACE) >/dev/null 2>&1 || $(KUBECTL) create namespace $(NAMESPACE)
	@echo "==> Package 1, base: secrets postgres redis minio"
	$(HELM) upgrade --install secrets ./charts/secrets -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install postgres ./charts/postgres -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install redis ./charts/redis -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install minio ./charts/minio -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(k8s_wait_package_1)
	@echo "==> Package 2, MLOps core: mlflow prometheus grafana"
	$(HELM) upgrade --install mlflow ./charts/mlflow -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install prometheus ./charts/prometheus -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install grafana ./charts/grafana -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(k8s_wait_package_2)
	@echo "==> Package 3, orchestration and UI: airflow fastapi streamlit datasource"
	$(HELM) upgrade --install airflow ./charts/airflow -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT) $(AIRFLOW_DAGS)
	$(HELM) upgrade --install fastapi ./charts/fastapi -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install streamlit ./charts/streamlit -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install datasource ./charts/datasource -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(k8s_wait_package_3)
	@echo "==> Installed. Next: make port-forward (URLs and passwords: docs/deployment.md, step 5)"

k8s-upgrade: ## helm upgrade every release with the charts of this checkout, in install order
	$(k8s_check_git)
	@echo "==> Upgrading package 1: secrets postgres redis minio (generated passwords are kept)"
	$(HELM) upgrade --install secrets ./charts/secrets -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install postgres ./charts/postgres -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install redis ./charts/redis -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install minio ./charts/minio -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(k8s_wait_package_1)
	@echo "==> Upgrading package 2: mlflow prometheus grafana"
	$(HELM) upgrade --install mlflow ./charts/mlflow -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install prometheus ./charts/prometheus -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install grafana ./charts/grafana -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(k8s_wait_package_2)
	@echo "==> Upgrading package 3: airflow fastapi streamlit datasource"
	$(HELM) upgrade --install airflow ./charts/airflow -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT) $(AIRFLOW_DAGS)
	$(HELM) upgrade --install fastapi ./charts/fastapi -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install streamlit ./charts/streamlit -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(HELM) upgrade --install datasource ./charts/datasource -n $(NAMESPACE) --timeout=$(HELM_TIMEOUT)
	$(k8s_wait_package_3)

k8s-test: ## helm test every release with a server: its test pod calls the Service as clients do
	@echo "==> helm test: each server called by its Service name (a failed test pod stays for kubectl logs)"
	$(HELM) test postgres -n $(NAMESPACE) --logs --timeout=$(K8S_TIMEOUT)
	$(HELM) test redis -n $(NAMESPACE) --logs --timeout=$(K8S_TIMEOUT)
	$(HELM) test minio -n $(NAMESPACE) --logs --timeout=$(K8S_TIMEOUT)
	$(HELM) test mlflow -n $(NAMESPACE) --logs --timeout=$(K8S_TIMEOUT)
	$(HELM) test prometheus -n $(NAMESPACE) --logs --timeout=$(K8S_TIMEOUT)
	$(HELM) test grafana -n $(NAMESPACE) --logs --timeout=$(K8S_TIMEOUT)
	$(HELM) test airflow -n $(NAMESPACE) --logs --timeout=$(K8S_TIMEOUT)
	$(HELM) test fastapi -n $(NAMESPACE) --logs --timeout=$(K8S_TIMEOUT)
	$(HELM) test streamlit -n $(NAMESPACE) --logs --timeout=$(K8S_TIMEOUT)
	$(HELM) test datasource -n $(NAMESPACE) --logs --timeout=$(K8S_TIMEOUT)

k8s-reset: ## Delete every release, every volume (all data) and the namespace, then recreate it empty
ifneq ($(CONFIRM),yes)
	@read -r -p "Delete every release, volume (all data) and namespace $(NAMESPACE)? [y/N] " answer; \
	  case "$$answer" in [yY]|[yY][eE][sS]) ;; *) echo "Aborted: nothing deleted."; exit 1;; esac
endif
	@echo "==> Uninstalling every release in $(NAMESPACE) (the staged ones and the umbrella 'mlops')"
	$(HELM) uninstall airflow fastapi streamlit datasource mlflow prometheus grafana minio redis postgres secrets mlops -n $(NAMESPACE) --ignore-not-found
	$(KUBECTL) get all -n $(NAMESPACE)
	@echo "==> Deleting the volumes, then the namespace (with the kept Secrets), and recreating it"
	$(KUBECTL) delete pvc --all -n $(NAMESPACE)
	$(KUBECTL) delete namespace $(NAMESPACE) --ignore-not-found
	$(KUBECTL) create namespace $(NAMESPACE)
	@echo "==> Namespace $(NAMESPACE) is empty. Next: make k8s-install"

port-forward: ## Every UI and API on localhost, in the background; Ctrl-C stops them all
	@echo "==> Port-forwards to namespace $(NAMESPACE) (Ctrl-C stops them all)"
	@trap 'kill $$(jobs -p) 2>/dev/null; exit 0' INT TERM HUP; \
	$(KUBECTL) port-forward svc/airflow-webserver 8080:8080 -n $(NAMESPACE) & \
	$(KUBECTL) port-forward svc/mlflow 5000:5000 -n $(NAMESPACE) & \
	$(KUBECTL) port-forward svc/minio 9001:9001 -n $(NAMESPACE) & \
	$(KUBECTL) port-forward svc/fastapi 8989:8989 -n $(NAMESPACE) & \
	$(KUBECTL) port-forward svc/streamlit 8501:8501 -n $(NAMESPACE) & \
	$(KUBECTL) port-forward svc/grafana 3000:3000 -n $(NAMESPACE) & \
	$(KUBECTL) port-forward svc/prometheus 9090:9090 -n $(NAMESPACE) & \
	echo "  Airflow     http://localhost:8080   (user admin; password: docs/deployment.md, step 5)"; \
	echo "  MLflow      http://localhost:5000"; \
	echo "  S3 console  http://localhost:9001   (root account of minio-credentials)"; \
	echo "  API         http://localhost:8989/docs"; \
	echo "  Streamlit   http://localhost:8501"; \
	echo "  Grafana     http://localhost:3000   (grafana-credentials)"; \
	echo "  Prometheus  http://localhost:9090"; \
	wait
