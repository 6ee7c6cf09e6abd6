# MLflow tracking server image for charts/mlflow: MLflow 3 with the PostgreSQL driver (psycopg 3)
# for the backend store and boto3 for S3 artifacts. Versions match the ones the test suite runs.
#   docker build -f docker/mlflow.Dockerfile -t mlops/mlflow:3.17.2 .
# The chart starts it as:
#   mlflow server --backend-store-uri postgresql+psycopg://... --artifacts-destination s3://...
#                 --serve-artifacts --host 0.0.0.0 --port 5000
FROM python:3.11.14-slim-bookworm

ARG MLFLOW_VERSION=3.17.2
ARG PSYCOPG_VERSION=3.3.9
ARG BOTO3_VERSION=1.44.8

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --no-cache-dir \
        "mlflow==${MLFLOW_VERSION}" \
        "psycopg[binary]==${PSYCOPG_VERSION}" \
        "boto3==${BOTO3_VERSION}" \
    && python -c "import mlflow, psycopg, boto3; print('mlflow', mlflow.__version__)"

# Unprivileged user with a fixed uid, so Kubernetes can check runAsNonRoot.
RUN groupadd --system --gid 10001 mlflow \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/mlflow mlflow

USER 10001:10001
WORKDIR /home/mlflow
EXPOSE 5000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]

ENTRYPOINT ["mlflow"]
CMD ["server", "--host", "0.0.0.0", "--port", "5000"]
