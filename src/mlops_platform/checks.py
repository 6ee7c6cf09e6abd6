"""Post-install checks: call each server by its Service name, the way its clients do.

`helm test` runs them from each chart's `templates/tests/` pod (`mlops check ...`), so a check
proves what a client in the cluster sees: the name resolves, the NetworkPolicy admits the caller,
the credentials of the Secrets work. Each returns one sentence saying what held, or raises
CheckFailed saying what did not and where to look. Passwords come from the environment (the
pod's Secret references), never from the command line.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from mlops_platform.schema import EXAMPLE_RECORD

T = TypeVar("T")
# A server that has just rolled out may still be warming up: each check retries this long.
RETRY_S = 60.0
TIMEOUT_S = 10.0


class CheckFailed(Exception):
    """A server did not answer as its clients need; the message says what and what to do."""


def retrying(check: Callable[[], T], within_s: float = RETRY_S) -> T:
    """``check()`` until it stops raising CheckFailed, for up to ``within_s``."""
    policy = retry(
        retry=retry_if_exception_type(CheckFailed),
        stop=stop_after_delay(within_s),
        wait=wait_fixed(min(3.0, within_s)),
        reraise=True,
    )
    return policy(check)()


def _get(client: httpx.Client, url: str) -> httpx.Response:
    try:
        return client.get(url)
    except httpx.HTTPError as error:
        raise CheckFailed(f"GET {url}: {error!r} (is the Service up, and admitted?)") from error


def http_ok(url: str) -> str:
    """GET ``url`` answers 200 (a health endpoint)."""
    with httpx.Client(timeout=TIMEOUT_S) as client:
        response = _get(client, url)
    if response.status_code != 200:
        raise CheckFailed(f"GET {url}: {response.status_code} {response.text[:300]}")
    return f"GET {url}: 200"


def fastapi(url: str, client: httpx.Client | None = None) -> str:
    """Ready, and once a model is in production, one prediction of a positive price.

    ``client``: an httpx client to send the requests with (the tests pass the app's own).
    """
    base = url.rstrip("/")
    with contextlib.nullcontext(client) if client else httpx.Client(timeout=TIMEOUT_S) as http:
        ready = _get(http, f"{base}/readyz")
        if ready.status_code != 200:
            raise CheckFailed(f"GET {base}/readyz: {ready.status_code} {ready.text[:300]}")
        model = _get(http, f"{base}/model")
        if model.status_code == 503:
            return f"{base}: ready, no model in production yet (prediction not tried)"
        if model.status_code != 200:
            raise CheckFailed(f"GET {base}/model: {model.status_code} {model.text[:300]}")
        try:
            answer = http.post(f"{base}/predict", json=EXAMPLE_RECORD)
        except httpx.HTTPError as error:
            raise CheckFailed(f"POST {base}/predict: {error!r}") from error
    if answer.status_code != 200:
        raise CheckFailed(f"POST {base}/predict: {answer.status_code} {answer.text[:300]}")
    (price,) = answer.json()["predictions"]
    if not price or price <= 0:
        raise CheckFailed(f"POST {base}/predict: a price of {price} for the example listing")
    version = answer.json()["model"].get("version")
    return f"{base}: ready, model version {version} predicts {price:,.0f} for the example"


def prometheus(url: str, job: str) -> str:
    """Ready, and the scrape target ``job`` is up."""
    base = url.rstrip("/")
    with httpx.Client(timeout=TIMEOUT_S) as client:
        ready = _get(client, f"{base}/-/ready")
        if ready.status_code != 200:
            raise CheckFailed(f"GET {base}/-/ready: {ready.status_code} {ready.text[:300]}")
        targets = _get(client, f"{base}/api/v1/targets?state=active").json()["data"]
    found = [t for t in targets["activeTargets"] if t["labels"].get("job") == job]
    if not found:
        jobs = sorted({t["labels"].get("job", "?") for t in targets["activeTargets"]})
        raise CheckFailed(f"{base}: no scrape target of job {job!r} (jobs: {jobs})")
    down = [f"{t['scrapeUrl']}: {t['lastError']}" for t in found if t["health"] != "up"]
    if down:
        raise CheckFailed(f"{base}: job {job!r} not up: {'; '.join(down)}")
    return f"{base}: ready, {len(found)} target(s) of job {job!r} up"


def grafana(url: str, user: str, password: str, datasource: str) -> str:
    """Healthy (its database too), and the provisioned ``datasource`` answers through it."""
    base = url.rstrip("/")
    with httpx.Client(timeout=TIMEOUT_S, auth=(user, password)) as client:
        health = _get(client, f"{base}/api/health")
        if health.status_code != 200 or health.json().get("database") != "ok":
            raise CheckFailed(f"GET {base}/api/health: {health.status_code} {health.text[:300]}")
        found = _get(client, f"{base}/api/datasources/name/{datasource}")
        if found.status_code != 200:
            raise CheckFailed(
                f"{base}: no datasource {datasource!r} ({found.status_code}; is it provisioned,"
                " and are the admin credentials those of the grafana-credentials Secret?)"
            )
        uid = found.json()["uid"]
        probe = _get(client, f"{base}/api/datasources/uid/{uid}/health")
    if probe.status_code != 200 or probe.json().get("status") != "OK":
        raise CheckFailed(f"{base}: datasource {datasource!r} unhealthy: {probe.text[:300]}")
    return f"{base}: healthy, datasource {datasource!r} answers"


def s3_bucket(endpoint: str, bucket: str, access_key: str, secret_key: str) -> str:
    """The bucket exists and the given identity can list it."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(connect_timeout=TIMEOUT_S, retries={"max_attempts": 1}),
    )
    try:
        client.head_bucket(Bucket=bucket)
        client.list_objects_v2(Bucket=bucket, MaxKeys=1)
    except (BotoCoreError, ClientError) as error:
        raise CheckFailed(f"{endpoint}: bucket {bucket!r}: {error}") from error
    return f"{endpoint}: bucket {bucket!r} exists and can be listed"


@dataclass(frozen=True)
class Login:
    """One database's login, as the Secret holds it."""

    database: str
    user: str
    password: str


def postgres_logins(host: str, port: int, logins: Iterable[Login]) -> str:
    """Each database accepts its own user (what each consumer connects with)."""
    import psycopg

    done = []
    for login in logins:
        try:
            with psycopg.connect(
                host=host,
                port=port,
                dbname=login.database,
                user=login.user,
                password=login.password,
                connect_timeout=int(TIMEOUT_S),
            ) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as error:
            raise CheckFailed(
                f"{host}:{port}/{login.database} as {login.user}: {error}".strip()
            ) from error
        done.append(f"{login.database} ({login.user})")
    if not done:
        raise CheckFailed("no database to check")
    return f"{host}:{port}: accepts {', '.join(done)}"


def redis_ping(host: str, port: int, password: str) -> str:
    """AUTH with the password, then PING answers PONG (what Celery does first)."""
    command = f"*2\r\n$4\r\nAUTH\r\n${len(password)}\r\n{password}\r\n" if password else ""
    command += "*1\r\n$4\r\nPING\r\n"
    expected = 2 if password else 1  # one reply line per command
    answer = b""
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as connection:
            connection.sendall(command.encode())
            while answer.count(b"\r\n") < expected:
                chunk = connection.recv(1024)
                if not chunk:
                    break
                answer += chunk
    except OSError as error:
        raise CheckFailed(f"redis {host}:{port}: {error!r}") from error
    replies = answer.decode(errors="replace").split("\r\n")[:expected]
    if replies[-1] != "+PONG":
        raise CheckFailed(f"redis {host}:{port}: {' / '.join(replies)} (wrong password?)")
    return f"redis {host}:{port}: PONG"
