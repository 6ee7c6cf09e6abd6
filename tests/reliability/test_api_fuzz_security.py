"""The running API under generated traffic, and the platform's security promises, checked live.

- Fuzzing: schemathesis drives a stateful sequence of every operation of the running API's own
  OpenAPI document (predictions, explanations, the hook with the real token, /model, health,
  metrics), valid and invalid inputs mixed: no answer is a 5xx, each conforms to the schema.
- Security: the hook refuses a missing or wrong token (401); a body declared or streamed past
  ``max_body_bytes`` is refused (413) before it is read whole; no process of the platform listens
  beyond loopback; every generated secret is long, random and no known default; PostgreSQL refuses
  a loopback login without a password for each role; S3 refuses the old fixed keys.
"""

from __future__ import annotations

import contextlib
import copy
import random
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import psutil
import psycopg
import pytest
import schemathesis
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core import NOT_SET
from sqlalchemy.engine import make_url

from mlops_platform.schema import STATE_CODES, STATES
from mlops_platform.storage.engine import normalise_url
from tests.e2e.conftest import processes_of
from tests.reliability.conftest import Platform, Scenario

pytestmark = pytest.mark.reliability

# --- fuzzing -------------------------------------------------------------------------------------

SCENARIOS = 40  # state-machine runs (hypothesis max_examples)
STEPS = 8  # most calls per run
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Real places and past sale dates the generated listings get (see with_real_places).
STATE_NAMES = [*STATES, *STATE_CODES]
CITIES = ["Austin", "san juan", " Boston "]
ZIP_CODES = ["78701", "00926", "601", "10001-1234"]
SOLD = [None, "1950-01-01", "1999-12-31", "2019-06-14"]


def a_place(seed: str) -> dict[str, Any] | None:
    """A real place for the generated body ``seed`` (None for a quarter: they keep theirs)."""
    pick = random.Random(seed)
    if pick.random() < 0.25:
        return None
    return {
        "state": pick.choice(STATE_NAMES),
        "city": pick.choice(CITIES),
        "zip_code": pick.choice(ZIP_CODES),
        "prev_sold_date": pick.choice(SOLD),
    }


def linked(document: dict[str, Any]) -> dict[str, Any]:
    """The API's document with a link from every operation's 2xx answer to every operation.

    The API's resources have no identifiers to pass along, so it declares no links, and
    schemathesis' state machine needs them to chain calls; any order of calls is a valid client
    session here (predict, hook, predict again, /model, ...), which these links say.
    """
    document = copy.deepcopy(document)
    operations = [
        operation["operationId"]
        for methods in document["paths"].values()
        for operation in methods.values()
    ]
    for methods in document["paths"].values():
        for operation in methods.values():
            for code, response in operation["responses"].items():
                if code.startswith("2"):
                    response["links"] = {
                        f"then_{name}": {"operationId": name} for name in operations
                    }
    return document


def with_real_places(body: Any, place: dict[str, Any]) -> Any:
    """A generated listing with a real state, zip code, city and past sale date.

    The schema allows any text there; the API takes only real places. Without this nearly every
    generated listing is refused (422) and the model is never reached.
    """
    if isinstance(body, dict) and "state" in body:
        return body | {key: value for key, value in place.items() if key in body}
    if isinstance(body, list):
        return [with_real_places(item, place) for item in body]
    return body


def test_stateful_fuzzing_of_every_operation_gets_no_server_error(
    platform: Platform, scenario: Scenario
) -> None:
    url = platform.settings.api_url
    document = httpx.get(f"{url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(linked(document))
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    token = platform.secrets["api_token"]
    tally: Counter[tuple[str, int]] = Counter()

    class Session(schema.as_state_machine()):  # type: ignore[misc]
        """One generated client session against the running API."""

        def before_call(self, case: schemathesis.Case) -> None:
            if case.body is not NOT_SET and case.operation.path in ("/predict", "/explain"):
                place = a_place(repr(case.body))
                if place is not None:
                    case.body = with_real_places(case.body, place)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            kwargs: dict[str, Any] = {"base_url": url, "timeout": 120}
            if case.operation.path.startswith("/hooks"):
                kwargs["headers"] = {"Authorization": f"Bearer {token}"}
            return kwargs

        def after_call(self, response: Any, case: schemathesis.Case) -> None:
            tally[case.operation.path, response.status_code] += 1

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    run_state_machine_as_test(
        Session,
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )

    calls = sum(tally.values())
    server_errors = sum(n for (_, code), n in tally.items() if code >= 500)
    operations = {path for path, _ in tally}
    by_status = Counter[int]()
    for (_, code), n in tally.items():
        by_status[code] += n
    assert server_errors == 0, tally
    assert operations == set(document["paths"]), f"not every operation was called: {tally}"
    assert ("/predict", 200) in tally, tally  # the model was reached, not only refusals
    assert ("/hooks/model_update", 200) in tally, tally  # the token was taken
    scenario.report(
        f"{calls} calls over {len(operations)} operations in {SCENARIOS} stateful runs: "
        f"0 server errors, every answer as the schema says ({dict(sorted(by_status.items()))})",
        calls=calls,
        runs=SCENARIOS,
        operations=len(operations),
        server_errors=server_errors,
        by_status={str(code): n for code, n in sorted(by_status.items())},
        by_operation={
            path: sum(n for (seen, _), n in tally.items() if seen == path)
            for path in sorted(operations)
        },
    )


# --- security -------------------------------------------------------------------------------------


def test_the_hook_refuses_a_missing_or_wrong_token(platform: Platform, scenario: Scenario) -> None:
    token = platform.secrets["api_token"]
    tries = {
        "none": {},
        "wrong": {"Authorization": "Bearer " + "x" * len(token)},
        "truncated": {"Authorization": f"Bearer {token[:-1]}"},
        "not bearer": {"Authorization": f"Basic {token}"},
    }
    with platform.api(timeout_s=120) as api:
        refused = {
            name: api.post("/hooks/model_update", headers=headers).status_code
            for name, headers in tries.items()
        }
        right = api.post("/hooks/model_update", headers={"Authorization": f"Bearer {token}"})
    assert refused == dict.fromkeys(tries, 401)
    assert right.status_code == 200, right.text  # the real token is what opens it
    scenario.report(
        f"hook: {len(tries)} missing/wrong tokens -> 401 each; the generated token -> 200",
        refused=refused,
        right=right.status_code,
    )


def _raw_request(url: str, head: str, body: bytes) -> tuple[int, bytes]:
    """Send a request head and only part of its body over a socket; the status and answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
        header, _, content = answer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in header.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        while len(content) < length and (chunk := sock.recv(65536)):
            content += chunk
    return int(header.split(b" ", 2)[1]), header + b"\r\n\r\n" + content


def _counted(chunks: Iterator[bytes], sent: list[int]) -> Iterator[bytes]:
    for chunk in chunks:
        sent[0] += len(chunk)
        yield chunk


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    platform: Platform, scenario: Scenario
) -> None:
    limit = platform.settings.max_body_bytes
    # Declared: Content-Length past the limit, and only 1 KiB of it ever sent. Were the server
    # to read the body whole it would wait for the rest and this would time out.
    declared = limit + 1
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\nConnection: close\r\n\r\n"
    )
    status, answer = _raw_request(platform.settings.api_url, head, b"[" + b" " * 1023)

    # Streamed: no Content-Length (chunked), up to 3x the limit offered; cut off past the limit.
    chunk = b" " * (64 * 1024)
    offered = 3 * limit
    sent = [0]
    chunks = (chunk for _ in range(offered // len(chunk)))
    try:
        streamed = httpx.post(
            f"{platform.settings.api_url}/predict",
            content=_counted(chunks, sent),
            headers={"content-type": "application/json"},
            timeout=120,
        ).status_code
    except (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError) as error:
        streamed = type(error).__name__  # refused while still sending: the connection closed
    with platform.api() as api:
        small = api.post("/predict", json={"not": "a listing"}).status_code

    assert status == 413, answer[:500]
    assert b"MLOPS_MAX_BODY_BYTES" in answer
    assert streamed in (413, "WriteError", "ReadError", "RemoteProtocolError"), streamed
    assert sent[0] < offered, "the server took the whole streamed upload"
    assert small == 422  # under the limit the body is read and judged
    scenario.report(
        f"limit {limit:,} B: Content-Length {declared:,} with 1 KiB sent -> 413 at once; "
        f"chunked stream -> {streamed} after {sent[0]:,} of {offered:,} B offered",
        limit_bytes=limit,
        declared_status=status,
        streamed_outcome=streamed,
        streamed_sent_bytes=sent[0],
        streamed_offered_bytes=offered,
    )


def platform_ports(platform: Platform) -> set[int]:
    settings_ = platform.settings
    return {
        settings_.pg_port,
        settings_.s3_port,
        settings_.mlflow_port,
        settings_.sim_port,
        settings_.api_port,
        settings_.ui_port,
        settings_.airflow_port,
    }


def listeners(platform: Platform) -> tuple[list[str], list[str]]:
    """The platform's listening sockets, (on loopback, beyond loopback): those of its processes
    (found by state folder or port, as tests/e2e does), of their children (Airflow's log servers
    retitle themselves "airflow serve-logs" and escape that search) and any on its ports."""
    pids = {int(line.split(":", 1)[0]): line for line in processes_of(platform.settings)}
    for pid in list(pids):
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    pids.setdefault(child.pid, f"{child.pid}: {' '.join(child.cmdline())}")
    settings_ = platform.settings  # and the ports Airflow's log servers would take
    ports = platform_ports(platform)
    ports |= {settings_.airflow_worker_log_port, settings_.airflow_triggerer_log_port}
    loopback, beyond = [], []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status != psutil.CONN_LISTEN:
            continue
        if conn.pid not in pids and conn.laddr.port not in ports:
            continue
        owner = pids.get(conn.pid) or f"{conn.pid}: (a process on a platform port)"
        where = f"{owner[:100]} on {conn.laddr.ip}:{conn.laddr.port}"
        (loopback if conn.laddr.ip in ("127.0.0.1", "::1") else beyond).append(where)
    return loopback, beyond


def test_nothing_listens_beyond_loopback(platform: Platform, scenario: Scenario) -> None:
    loopback, beyond = listeners(platform)
    ports = platform_ports(platform)
    seen_ports = {int(where.rsplit(":", 1)[1]) for where in loopback}
    assert not beyond, beyond
    assert ports <= seen_ports, f"services not found listening: {sorted(ports - seen_ports)}"
    scenario.report(
        f"{len(loopback)} listening sockets of the platform, all on 127.0.0.1/::1; 0 beyond",
        listening_loopback=len(loopback),
        listening_beyond=len(beyond),
        sockets=sorted(loopback),
    )


# Known defaults: those of the tools, and the fixed ones this platform had before issue 17.
DEFAULTS = {"airflow", "mlflow", "postgres", "admin", "mlops", "mlops-secret", "password"}
DEFAULTS |= {"minioadmin", "secret", "changeme", "rawdata", "cleandata"}


def test_no_default_password_anywhere(platform: Platform, scenario: Scenario) -> None:
    secrets = platform.secrets
    secret_names = [n for n in secrets if n.endswith(("password", "_key", "_token", "_secret"))]
    secret_names.remove("s3_access_key")  # an id, not a secret (random suffix all the same)
    values = [secrets[name] for name in secret_names]
    short = [name for name in secret_names if len(secrets[name]) < 16]
    known = [name for name in secret_names if secrets[name].lower() in DEFAULTS]
    assert not short, short
    assert not known, known
    assert len(set(values)) == len(values), "two secrets are the same"

    # PostgreSQL: every role refuses a loopback login without its password (no trust, no
    # ~/.pgpass or PGPASSWORD to help), and takes the generated one.
    settings_ = platform.settings
    urls = [settings_.raw_url, settings_.clean_url, settings_.mlflow_backend_db_url]
    urls.append(settings_.airflow_db_url)
    roles = {"postgres": secrets["postgres_password"]}
    for url in urls:
        parsed = make_url(normalise_url(str(url)))
        roles[str(parsed.username)] = str(parsed.password)
    refused = []
    for role, password in roles.items():
        where = {"host": "127.0.0.1", "port": settings_.pg_port, "user": role}
        where |= {"dbname": "postgres", "passfile": "/dev/null", "connect_timeout": 30}
        for wrong in (None, "mlops", role):
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(**where, **({"password": wrong} if wrong else {})).close()
            refused.append(f"{role}/{wrong}")
        with psycopg.connect(**where, password=password) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)

    # S3: the old fixed keys are refused; the generated ones work.
    def s3(access: str, secret: str) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=settings_.s3_endpoint_url,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=30, read_timeout=60),
        )

    with pytest.raises(ClientError) as old_keys:
        s3("mlops", "mlops-secret").list_buckets()
    buckets = s3(secrets["s3_access_key"], secrets["s3_secret_key"]).list_buckets()["Buckets"]
    assert buckets, "the generated S3 keys see no bucket"
    s3_error = old_keys.value.response["Error"]["Code"]
    scenario.report(
        f"{len(secret_names)} generated secrets, all >= 16 chars, distinct, none a default; "
        f"PostgreSQL refused {len(refused)} logins without/with a wrong password over "
        f"{len(roles)} roles; S3 refused mlops/mlops-secret ({s3_error})",
        secrets=len(secret_names),
        shortest_secret=min(len(v) for v in values),
        pg_roles=sorted(roles),
        pg_logins_refused=len(refused),
        s3_old_keys_error=s3_error,
    )
