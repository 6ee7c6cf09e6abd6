# Airflow image for charts/airflow: the official Apache Airflow 3.3.2 image (Python 3.11, with the
# celery, cncf.kubernetes, fab, postgres (psycopg2) and redis providers) plus this repository's
# package (the `mlops` CLI and the task functions the DAGs call) and the DAGs of dags/, used when
# the chart's git-sync is disabled. Build from the repository root:
#   docker build -f docker/airflow.Dockerfile -t mlops/airflow:3.3.2 .
#   minikube image build -f docker/airflow.Dockerfile -t mlops/airflow:3.3.2 .
# The chart runs `airflow api-server|scheduler|dag-processor|triggerer|celery worker`,
# `airflow db migrate` and `mlops db upgrade` through the image's own entrypoint.
FROM apache/airflow:3.3.2-python3.11

# Must equal the base image's Airflow version: it is named again in the pip command below.
ARG AIRFLOW_VERSION=3.3.2

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# The base image already runs as airflow (uid 50000, group 0); installing as that user is how the
# image is meant to be extended (never as root).
USER 50000:0

COPY --chown=50000:0 pyproject.toml README.md /src/
COPY --chown=50000:0 src/ /src/src/

# The package alone, not its `airflow` extra: Airflow is already in the image. Naming
# apache-airflow==${AIRFLOW_VERSION} in the same command is the official image's documented way to
# add packages without pip upgrading or downgrading Airflow; with pip's default only-if-needed
# strategy every dependency already installed (and tested by Airflow's constraints for 3.3.2)
# that satisfies the package's ranges is kept, and only what is missing (MLflow, SHAP, ...) is
# resolved. The check fails the build if Airflow moved or the package does not import.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" /src \
    && python -c "import airflow, mlops_platform; assert airflow.__version__ == '${AIRFLOW_VERSION}', airflow.__version__" \
    && mlops --help > /dev/null

# DAGs baked into the image: AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags when git-sync is off.
COPY --chown=50000:0 dags/ /opt/airflow/dags/

# 8080 api-server, 8793 worker log server, 8794 triggerer log server.
EXPOSE 8080 8793 8794
