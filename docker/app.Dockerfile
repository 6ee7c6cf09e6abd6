# Application image for charts/fastapi, charts/streamlit and charts/datasource (and one-off jobs):
# this repository's package WITHOUT the `airflow` extra, so it carries the inference API, the
# Streamlit UI, the data-source simulator and the `mlops` CLI, and no orchestrator. Every chart
# picks its program by the arguments it passes to the `mlops` entrypoint:
#   mlops serve api --host 0.0.0.0 --port 8989          (charts/fastapi)
#   mlops serve ui --host 0.0.0.0 --port 8501           (charts/streamlit)
#   mlops datasource serve --host 0.0.0.0 --port 8000   (charts/datasource)
# Build from the repository root (tag = the package version in pyproject.toml):
#   docker build -f docker/app.Dockerfile -t mlops/app:0.1.0 .
#   minikube image build -f docker/app.Dockerfile -t mlops/app:0.1.0 .
#
# Two stages: the first builds a virtual environment from the sources, the second receives only
# that environment (no sources, no build cache). Same base image as docker/mlflow.Dockerfile.
FROM python:3.11.14-slim-bookworm AS build

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/mlops \
    PATH=/opt/mlops/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/

# `.` is the package with its runtime dependencies only: no `[airflow]`, no `[dev]`.
RUN python -m venv "$VIRTUAL_ENV" \
    && pip install --no-cache-dir . \
    && mlops --help > /dev/null

FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/mlops \
    PATH=/opt/mlops/bin:$PATH \
    HOME=/home/mlops

COPY --from=build /opt/mlops /opt/mlops

# Unprivileged user with a fixed uid, so Kubernetes can check runAsNonRoot (charts use 10001).
RUN groupadd --system --gid 10001 mlops \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/mlops mlops

USER 10001:10001
WORKDIR /home/mlops
# 8989 inference API, 8501 Streamlit UI, 8000 data-source simulator.
EXPOSE 8989 8501 8000

# No HEALTHCHECK: one image runs three different servers, so a single check would be wrong for
# two of them; the charts probe each one on its own endpoint (/healthz, /_stcore/health).
ENTRYPOINT ["mlops"]
CMD ["--help"]
