"""Data-source faults, and the CLI and Airflow collecting at the same time (issue 17).

What the scenarios prove, against the real platform:

- The data source answering 5xx, hanging past the client's timeout, or closing the connection
  mid-body makes `mlops pipeline run data` retry (tenacity, ``MLOPS_HTTP_RETRIES`` attempts), then
  exit 1 with a message naming the source and the fault; a body of broken JSON is not retried
  (each ``/data`` call hands out the next batch) and fails the same clear way. In every case
  nothing is stored: RAW's batches and listings and CLEAN's rows, rejections and cleaned batches
  are unchanged.
- A source that fails once and then answers costs one retry: its batch is stored and cleaned once.
- `mlops pipeline run data` and Airflow's ``data_pipeline`` run at the same time, several rounds:
  every batch is stored in RAW once (no duplicate batch, listings = batch size x batches) and
  cleaned into CLEAN once (kept + rejected = batch size per batch, no row twice).

The simulator cannot misbehave on demand, so the faults come from :class:`FaultProxy`, a fake
standing between the CLI and the real simulator. Everything else is the real platform.
"""

from __future__ import annotations

import json
import re
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import httpx
import pytest
from sqlalchemy import Engine, text

from mlops_platform.local import airflow
from mlops_platform.local.processes import wait_until
from mlops_platform.settings import Settings
from tests.e2e.conftest import mlops
from tests.reliability.conftest import Platform, Scenario

pytestmark = pytest.mark.reliability

Fault = Literal["5xx", "timeout", "mid-body", "malformed"]
DAG = "data_pipeline"
# Small client timeouts and waits, so a scenario that exhausts its retries takes seconds.
QUICK_CLIENT = {"http_timeout_s": 2.0, "http_retries": 3, "http_backoff_s": 0.1}
# Faults on a group nobody else collects: a cut or broken answer still counts as served at the
# simulator, and the platform's own group (the DAG's) must not lose batches to these scenarios.
FAULT_GROUP = 2
# What the 503 says: a gateway's error text quoting a path in brackets, which the CLI's rich
# console once read as a closing markup tag and crashed on instead of printing the error.
GATEWAY_BODY = "503 Service Unavailable: upstream [/data] is overloaded, try again later"


@dataclass
class FaultProxy:
    """A FAKE, on purpose: a fault-injecting HTTP proxy in front of the real simulator.

    The simulator cannot answer 5xx, hang, cut a body or send broken JSON on demand; this proxy
    does it to the first ``failures`` ``/data`` requests and forwards everything else unchanged.
    One request per connection (it answers ``Connection: close``), one thread per connection.
    """

    upstream: str
    fault: Fault
    failures: int
    attempts: int = 0  # /data requests received
    handed_out: list[int] = field(default_factory=list)  # batches the simulator gave a fault
    _server: socketserver.ThreadingTCPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(120)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(65536)
            if not chunk:
                return
            head += chunk
        target = head.split(b" ", 2)[1].decode()
        fault: Fault | None = None
        if target.startswith("/data"):
            with self._lock:
                self.attempts += 1
                fault = self.fault if self.attempts <= self.failures else None
        if fault == "5xx":
            _answer(conn, 503, GATEWAY_BODY.encode(), "text/plain")
            return
        if fault == "timeout":
            conn.recv(1)  # hold the request until the client gives up and hangs up
            return
        upstream = httpx.get(f"{self.upstream}{target}", timeout=60)
        body = upstream.content
        if fault is None:
            _answer(conn, upstream.status_code, body, upstream.headers["content-type"])
            return
        self.handed_out.append(json.loads(body)["batch_number"])
        if fault == "mid-body":  # promise the whole body, send half, hang up
            _answer(conn, 200, body[: len(body) // 2], "application/json", length=len(body))
        else:  # malformed: the body cut short, sent as a complete answer
            _answer(conn, 200, body[: len(body) // 2], "application/json")


def _answer(
    conn: socket.socket, status: int, body: bytes, content_type: str, length: int | None = None
) -> None:
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n"
    )
    conn.sendall(head.encode() + body)
    conn.shutdown(socket.SHUT_RDWR)


# --- the stores ---------------------------------------------------------------------------------


def _query(engine: Engine, sql: str) -> list[tuple]:
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def store_counts(platform: Platform) -> dict[str, int]:
    """Rows in every RAW and CLEAN table a data pipeline writes."""
    (raw,) = _query(
        platform.raw(),
        "SELECT (SELECT count(*) FROM raw_data.batches), (SELECT count(*) FROM raw_data.listings)",
    )
    (clean,) = _query(
        platform.clean(),
        "SELECT (SELECT count(*) FROM clean_data.cleaned_batches),"
        " (SELECT count(*) FROM clean_data.listings), (SELECT count(*) FROM clean_data.rejected)",
    )
    names = ("raw_batches", "raw_listings", "cleaned_batches", "clean_listings", "rejected")
    return dict(zip(names, (*raw, *clean), strict=True))


@dataclass(frozen=True)
class Ledger:
    """Every RAW batch and what CLEAN made of it, checked for anything stored or cleaned twice."""

    batches: int
    listings: int
    duplicate_batches: int  # same group/day/batch number (or payload) stored more than once
    short_batches: list[int]  # batch ids whose listings differ from the row count they arrived with
    uncleaned: list[int]  # batch ids CLEAN has no record of
    unaccounted: list[int]  # batch ids whose kept + rejected rows differ from their RAW rows
    duplicate_rows: int  # RAW rows in CLEAN more than once (kept twice, rejected twice, or both)
    sizes: set[int]


def ledger(platform: Platform) -> Ledger:
    raw = platform.raw()
    ((batches, same_number, same_payload),) = _query(
        raw,
        "SELECT count(*),"
        " count(*) - count(DISTINCT (group_number, day, batch_number)),"
        " count(*) - count(DISTINCT sha256) FROM raw_data.batches",
    )
    declared = dict(_query(raw, "SELECT id, row_count FROM raw_data.batches"))
    rows = dict(_query(raw, "SELECT batch_id, count(*) FROM raw_data.listings GROUP BY 1"))
    clean = platform.clean()
    kept = dict(_query(clean, "SELECT batch_id, count(*) FROM clean_data.listings GROUP BY 1"))
    rejected = dict(
        _query(
            clean, "SELECT batch_id, count(DISTINCT row_number) FROM clean_data.rejected GROUP BY 1"
        )
    )
    markers = {
        batch_id: (rows_read, cleaned, rejected_n)
        for batch_id, rows_read, cleaned, rejected_n in _query(
            clean, "SELECT batch_id, rows_read, cleaned, rejected FROM clean_data.cleaned_batches"
        )
    }
    ((twice,),) = _query(
        clean,
        "SELECT (SELECT count(*) - count(DISTINCT (batch_id, row_number)) FROM clean_data.rejected)"
        " + (SELECT count(*) FROM clean_data.listings JOIN clean_data.rejected"
        " USING (batch_id, row_number))",
    )
    return Ledger(
        batches=batches,
        listings=sum(rows.values()),
        duplicate_batches=same_number + same_payload,
        short_batches=sorted(b for b, n in declared.items() if rows.get(b, 0) != n),
        uncleaned=sorted(b for b in declared if b not in markers),
        unaccounted=sorted(
            b
            for b, n in declared.items()
            if b in markers and markers[b] != (n, kept.get(b, 0), rejected.get(b, 0))
        ),
        duplicate_rows=twice,
        sizes=set(declared.values()),
    )


def assert_each_batch_once(platform: Platform, found: Ledger) -> None:
    batch_size = platform.settings.sim_batch_size
    assert found.duplicate_batches == 0, found
    assert found.short_batches == [], found
    assert found.sizes == {batch_size}, found
    assert found.listings == batch_size * found.batches, found
    assert found.uncleaned == [], found
    assert found.unaccounted == [], found
    assert found.duplicate_rows == 0, found


# --- Airflow ------------------------------------------------------------------------------------


@dataclass
class Airflow:
    """Airflow's REST API as a user drives it: a bearer token from the admin login."""

    settings: Settings
    token: str = ""

    def call(self, method: str, path: str, **kwargs: object) -> dict:
        if not self.token:
            self.token = airflow.token(self.settings, timeout_s=30)
        response = httpx.request(
            method,
            f"{airflow.base_url(self.settings)}/api/v2/{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            **kwargs,  # type: ignore[arg-type]
        )
        response.raise_for_status()
        return response.json()

    def runs(self, *states: str) -> int:
        query = "&".join(f"state={state}" for state in states)
        return int(self.call("GET", f"dags/{DAG}/dagRuns?{query}")["total_entries"])

    def wait_no_runs(self, *states: str) -> None:
        def idle() -> bool:
            if self.runs(*states) == 0:
                return True
            time.sleep(2)
            return False

        wait_until(f"{DAG} runs {'/'.join(states)} to finish", idle, 900)

    def trigger(self) -> str:
        now = datetime.now(UTC)
        run = self.call(
            "POST",
            f"dags/{DAG}/dagRuns",
            json={"logical_date": now.isoformat(), "dag_run_id": f"reliability__{now:%H%M%S%f}"},
        )
        return str(run["dag_run_id"])

    def wait_run(self, run_id: str) -> dict:
        """The run once it finished (success or failed)."""
        finished: dict = {}

        def done() -> bool:
            run = self.call("GET", f"dags/{DAG}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                finished.update(run)
                return True
            time.sleep(1)
            return False

        wait_until(f"{DAG} run {run_id}", done, 900)
        return finished

    def stored(self, run_id: str) -> dict:
        """What the run's ingest task returned (its XCom): batch id, number, stored or not."""
        entry = self.call(
            "GET", f"dags/{DAG}/dagRuns/{run_id}/taskInstances/ingest/xcomEntries/return_value"
        )
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value

    def paused(self, paused: bool) -> None:
        self.call("PATCH", f"dags/{DAG}", json={"is_paused": paused})


@pytest.fixture
def quiet_stores(platform: Platform) -> Iterator[None]:
    """``data_pipeline`` idle, then paused, so only the scenario writes RAW and CLEAN.

    Paused only once idle: a paused DAG's run never finishes (its task retries are not scheduled),
    and one queued in between is let through before pausing again.
    """
    dags = Airflow(platform.settings)
    deadline = time.monotonic() + 900
    while True:
        dags.wait_no_runs("queued", "running")
        dags.paused(True)
        if dags.runs("queued", "running") == 0:
            break
        dags.paused(False)
        assert time.monotonic() < deadline, f"{DAG} never stayed idle"
    try:
        yield
    finally:
        dags.paused(False)


# --- scenarios ----------------------------------------------------------------------------------


def _one_line(output: str) -> str:
    """The CLI's output with rich's line wrapping undone."""
    return " ".join(output.split())


@pytest.mark.parametrize(
    ("fault", "attempts", "says"),
    [
        ("5xx", QUICK_CLIENT["http_retries"], ["HTTP 503", GATEWAY_BODY]),
        ("timeout", QUICK_CLIENT["http_retries"], ["ReadTimeout"]),
        ("mid-body", QUICK_CLIENT["http_retries"], ["RemoteProtocolError"]),
        ("malformed", 1, ["non-JSON"]),
    ],
    ids=["5xx", "timeout", "mid-body", "malformed"],
)
def test_data_source_fault(
    platform: Platform,
    scenario: Scenario,
    quiet_stores: None,
    fault: Fault,
    attempts: int,
    says: list[str],
) -> None:
    before = store_counts(platform)
    with FaultProxy(platform.settings.datasource_url, fault, failures=1_000) as proxy:
        settings = platform.settings.replace(
            datasource_url=proxy.url, group_number=FAULT_GROUP, **QUICK_CLIENT
        )
        started = time.monotonic()
        result = mlops(["pipeline", "run", "data"], settings, timeout_s=300)
        seconds = time.monotonic() - started
    after = store_counts(platform)
    output = _one_line(result.stdout + result.stderr)
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    assert proxy.url in output, output  # names the source
    for words in says:
        assert words in output, output
    assert proxy.attempts == attempts, output
    assert output.count("Retrying") == attempts - 1, output  # tenacity's warning per retry
    assert after == before
    message = re.sub(r"^.*?(data source)", r"\1", _one_line(result.stdout))
    scenario.report(
        f"{fault}: {proxy.attempts} attempt(s), exit {result.returncode} in {seconds:.1f} s, "
        f"nothing stored ({after['raw_batches']} RAW batches before and after)",
        fault=fault,
        attempts=proxy.attempts,
        exit_code=result.returncode,
        seconds=round(seconds, 1),
        raw_batches_added=after["raw_batches"] - before["raw_batches"],
        raw_listings_added=after["raw_listings"] - before["raw_listings"],
        clean_rows_added=after["clean_listings"] - before["clean_listings"],
        rejected_added=after["rejected"] - before["rejected"],
        # Batches the simulator counted as served but the client never got whole: its /data hands
        # out the next batch each call, so a retry after a cut answer skips one.
        source_batches_lost=len(proxy.handed_out),
        message=message[:300],
    )


def test_data_source_heals_after_one_failure(
    platform: Platform, scenario: Scenario, quiet_stores: None
) -> None:
    before = store_counts(platform)
    with FaultProxy(platform.settings.datasource_url, "5xx", failures=1) as proxy:
        settings = platform.settings.replace(datasource_url=proxy.url, **QUICK_CLIENT)
        started = time.monotonic()
        result = mlops(["pipeline", "run", "data"], settings, timeout_s=300)
        seconds = time.monotonic() - started
    output = _one_line(result.stdout + result.stderr)
    assert result.returncode == 0, output
    assert proxy.attempts == 2, output
    stored = re.search(
        r"Batch (\d+) .*? (\d+) rows received and stored in RAW as batch id (\d+)", output
    )
    assert stored, output
    assert int(stored[2]) == platform.settings.sim_batch_size, output
    after = store_counts(platform)
    size = platform.settings.sim_batch_size
    assert after["raw_batches"] - before["raw_batches"] == 1
    assert after["raw_listings"] - before["raw_listings"] == size
    assert after["cleaned_batches"] - before["cleaned_batches"] == 1
    added = (
        after["clean_listings"] + after["rejected"] - before["clean_listings"] - before["rejected"]
    )
    assert added == size
    found = ledger(platform)
    assert_each_batch_once(platform, found)
    scenario.report(
        f"one 503 then the answer: {proxy.attempts} attempts, batch {stored[1]} stored once "
        f"({size} rows) and cleaned once ({added} kept + rejected) in {seconds:.1f} s",
        attempts=proxy.attempts,
        batch_number=int(stored[1]),
        rows=size,
        clean_plus_rejected=added,
        seconds=round(seconds, 1),
    )


ROUNDS = 3


def test_cli_and_airflow_data_pipelines_at_once(platform: Platform, scenario: Scenario) -> None:
    dags = Airflow(platform.settings)
    dags.wait_no_runs("queued", "running")
    settings = platform.settings
    ((served,),) = _query(
        platform.raw(),
        "SELECT coalesce(max(batch_number), 0) FROM raw_data.batches"
        f" WHERE group_number = {settings.group_number} AND day = '{settings.day}'",
    )
    assert settings.sim_batches - served >= 2 * ROUNDS, (
        f"the simulator has {settings.sim_batches - served} batches left; this scenario needs "
        f"{2 * ROUNDS} (raise sim_batches in tests/reliability/conftest.py)"
    )
    before = store_counts(platform)
    rounds = []
    stored_by: dict[int, str] = {}  # RAW batch id -> who stored it
    with ThreadPoolExecutor(1) as pool:
        for number in range(1, ROUNDS + 1):
            cli_started = time.time()
            cli = pool.submit(mlops, ["pipeline", "run", "data"], settings, 600)
            run = dags.wait_run(dags.trigger())
            result: subprocess.CompletedProcess[str] = cli.result()
            cli_ended = time.time()
            output = _one_line(result.stdout + result.stderr)
            assert result.returncode == 0, output
            by_cli = re.search(r"stored in RAW as batch id (\d+)", output)
            assert by_cli, output
            assert run["state"] == "success", run
            by_dag = dags.stored(run["dag_run_id"])
            assert by_dag["stored"], by_dag
            for batch_id, who in ((int(by_cli[1]), "cli"), (int(by_dag["batch_id"]), "airflow")):
                assert batch_id not in stored_by, f"batch id {batch_id} stored twice"
                stored_by[batch_id] = f"{who} round {number}"
            dag_started = datetime.fromisoformat(run["start_date"]).timestamp()
            dag_ended = datetime.fromisoformat(run["end_date"]).timestamp()
            rounds.append(
                {
                    "dag_state": run["state"],
                    "dag_run_s": round(dag_ended - dag_started, 1),
                    "cli_s": round(cli_ended - cli_started, 1),
                    "overlap_s": round(
                        max(0.0, min(dag_ended, cli_ended) - max(dag_started, cli_started)), 1
                    ),
                }
            )
    after = store_counts(platform)
    found = ledger(platform)
    assert_each_batch_once(platform, found)
    new_batches = after["raw_batches"] - before["raw_batches"]
    assert new_batches >= 2 * ROUNDS
    scenario.report(
        f"{ROUNDS} rounds of CLI + Airflow at once: {len(stored_by)} batches stored by them, "
        f"{found.batches} in RAW with {found.listings} rows, {found.duplicate_batches} duplicate "
        f"batches, {found.duplicate_rows} rows cleaned twice; DAG runs "
        f"{', '.join(r['dag_state'] for r in rounds)} in "
        f"{', '.join(str(r['dag_run_s']) for r in rounds)} s, CLI runs in "
        f"{', '.join(str(r['cli_s']) for r in rounds)} s",
        rounds=rounds,
        batches_stored=len(stored_by),
        new_batches=new_batches,
        raw_batches=found.batches,
        raw_listings=found.listings,
        clean_rows=after["clean_listings"],
        rejected=after["rejected"],
        duplicate_batches=found.duplicate_batches,
        duplicate_rows=found.duplicate_rows,
    )
