"""`mlops up | status | logs | down | demo`: the local platform's commands and their output.

Registered on the main Typer app by ``cli.py``; each command reads settings, calls
``local.platform`` / ``local.demo`` and renders the result with rich.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlops_platform.local import airflow, platform
from mlops_platform.local import prometheus as local_prometheus
from mlops_platform.local.keys import keys, with_local_secrets
from mlops_platform.settings import Settings

console = Console()


class _Lines:
    """One progress line per service: waiting → starting (spinner) → healthy/reused/failed."""

    def __init__(self, progress: Progress, names: list[str]) -> None:
        self.progress = progress
        self.tasks = {
            name: progress.add_task(name, total=1, start=False, state="[dim]waiting[/dim]")
            for name in names
        }

    def __call__(self, name: str, state: str, detail: str) -> None:
        task = self.tasks[name]
        if state == "starting":
            self.progress.start_task(task)
            self.progress.update(task, state="starting...")
            return
        colour = {"healthy": "green", "reused": "cyan", "skipped": "yellow", "failed": "red"}.get(
            state, "white"
        )
        self.progress.update(task, completed=1, state=f"[{colour}]{state}[/{colour}] {detail}")
        self.progress.stop_task(task)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(finished_text="•"),
        TextColumn("{task.description:<22}"),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _fail(error: Exception) -> None:
    console.print(f"[red]{error}[/red]")
    raise typer.Exit(1) from None


def endpoints_table(settings: Settings, title: str = "Local platform") -> Table:
    table = Table(title=title)
    for column in ("service", "state", "url", "pid"):
        table.add_column(column)
    for endpoint in platform.status(settings):
        state = "[green]up[/green]" if endpoint.pid else "[red]down[/red]"
        table.add_row(endpoint.name, state, endpoint.url, str(endpoint.pid or ""))
    return table


def credentials_table(settings: Settings) -> Table:
    table = Table(title="Open these")
    for column in ("what", "url", "login"):
        table.add_column(column)
    password = keys(settings)["admin_password"]
    table.add_row(
        "Airflow (DAGs)",
        airflow.base_url(settings),
        f"{settings.airflow_admin_user} / {password}",
    )
    table.add_row("UI (Streamlit)", f"http://127.0.0.1:{settings.ui_port}", "—")
    table.add_row("Inference API", f"{settings.api_url}/docs", f"hook token {settings.api_token}")
    table.add_row("MLflow", settings.mlflow_tracking_uri, "—")
    if local_prometheus.binary():
        table.add_row("Prometheus (alerts: /alerts)", local_prometheus.url(settings), "—")
    table.add_row(
        "S3 API", settings.s3_endpoint_url, f"{settings.s3_access_key} / {settings.s3_secret_key}"
    )
    table.add_row(
        "PostgreSQL",
        f"127.0.0.1:{settings.pg_port}",
        f"users in MLOPS_*_DB_URL; passwords in {settings.state_dir.resolve() / 'keys.json'}",
    )
    return table


def up(settings: Settings, no_pipeline: bool) -> None:
    """Every service, then the first model (before Airflow, so the scheduler's first runs do not
    race the direct ones), then Airflow; then the URLs and logins."""
    from mlops_platform.local.bootstrap import ensure_production_model

    apps = [name for name in platform.ALL if name not in platform.AIRFLOW]
    started = time.monotonic()
    try:
        platform.preflight(settings, platform.ALL)
        with _progress() as progress:
            lines = _Lines(progress, [*apps, "first model", *platform.AIRFLOW])
            platform.up(settings, lines, services=apps)
            if no_pipeline:
                lines("first model", "reused", "skipped (--no-pipeline)")
            else:
                lines("first model", "starting", "")
                first = ensure_production_model(settings)
                state = "healthy" if first["ran"] else "reused"
                lines("first model", state, f"v{first['version']} {first['outcome']}")
            platform.up(settings, lines, services=platform.AIRFLOW)
    except Exception as error:
        _fail(error)
    console.print(credentials_table(settings))
    console.print(
        f"Up in {time.monotonic() - started:.0f} s. State in {settings.state_dir.resolve()}; "
        "`mlops status`, `mlops logs SERVICE`, `mlops down` (keeps data), "
        "`mlops down --purge` (deletes it)."
    )


def status(settings: Settings) -> None:
    console.print(endpoints_table(settings))


def logs(settings: Settings, name: str, lines: int, follow: bool) -> None:
    if name not in platform.ALL and name != "airflow-migrate":
        _fail(ValueError(f"unknown service {name!r}; one of: {', '.join(platform.ALL)}"))
    path = platform.log_file(settings, name)
    if not path.is_file():
        _fail(FileNotFoundError(f"{name} has no log yet ({path}): has it been started?"))
    with path.open(errors="replace") as handle:
        for line in deque(handle, maxlen=lines):
            console.out(line.rstrip("\n"), highlight=False)
        while follow:
            line = handle.readline()
            if line:
                console.out(line.rstrip("\n"), highlight=False)
            else:
                time.sleep(0.5)


def down(settings: Settings, purge: bool) -> None:
    try:
        stopped = platform.down(settings, purge=purge)
    except platform.PlatformError as error:
        _fail(error)
    console.print(f"Stopped: {', '.join(stopped) or 'nothing was running'}.")
    where = settings.state_dir.resolve()
    console.print(f"Deleted {where}." if purge else f"Data is kept in {where}.")


def demo(settings: Settings, keep: Path | None) -> None:
    from mlops_platform.local.demo import run_demo, summary

    console.print(
        "Demo: a fresh platform in a temporary folder, every simulator batch, then "
        "predictions through the API."
    )
    try:
        result = run_demo(settings, say=lambda text: console.print(f"  {text}"), keep=keep)
    except Exception as error:
        _fail(error)
    counts = summary(result)
    table = Table(title="Demo summary")
    table.add_column("")
    table.add_column("", justify="right")
    for label, key in (
        ("batches", "batches"),
        ("rows received", "rows_received"),
        ("rows cleaned", "rows_cleaned"),
        ("  of which repaired", "rows_repaired"),
        ("rows rejected", "rows_rejected"),
        ("models trained", "trained"),
        ("promoted", "promoted"),
        ("rejected", "rejected"),
        ("skipped (no training)", "skipped"),
    ):
        table.add_row(label, f"{counts[key]:,}")
    table.add_row("model in production", f"v{counts['production_version']}")
    table.add_row(
        f"API MAE on {result['predictions']['listings']} held-out listings",
        f"${counts['api_mae']:,.0f}",
    )
    table.add_row("wall time", f"{counts['seconds']:.0f} s")
    console.print(table)
    for row in result["history"]:
        console.print(
            f"  {row.get('data_version')}: [bold]{row['outcome']}[/bold] — {row['reason']}"
        )


def register(app: typer.Typer, load: Callable[[], Settings]) -> None:
    """Add the commands to ``app``; ``load`` returns validated settings (or exits)."""

    @app.command("up")
    def up_command(
        no_pipeline: Annotated[
            bool, typer.Option("--no-pipeline", help="Only start services (no first model).")
        ] = False,
    ) -> None:
        """Start the whole platform and put a first model in production (safe to run again).

        PostgreSQL, S3, MLflow, the simulator, the inference API, the UI, the loop metrics
        exporter, Prometheus (when installed) and Airflow.
        """
        up(with_local_secrets(load()), no_pipeline)

    @app.command("status")
    def status_command() -> None:
        """Each local service: up or down, URL, pid."""
        status(load())

    @app.command("logs")
    def logs_command(
        service: Annotated[str, typer.Argument(help=f"One of: {', '.join(platform.ALL)}.")],
        lines: Annotated[int, typer.Option("--lines", "-n", help="Lines from the end.")] = 50,
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
    ) -> None:
        """A service's log (its output, from the state folder)."""
        logs(load(), service, lines, follow)

    @app.command("down")
    def down_command(
        purge: Annotated[
            bool, typer.Option("--purge", help="Also delete the state folder (all data).")
        ] = False,
    ) -> None:
        """Stop everything `mlops up` started, in reverse order; data is kept unless --purge."""
        down(load(), purge)

    @app.command("demo")
    def demo_command(
        keep: Annotated[
            Path | None,
            typer.Option(help="Use this state folder and keep it (default: a temporary one)."),
        ] = None,
    ) -> None:
        """End to end, headless: start, every batch through the pipelines, predictions, stop."""
        demo(load(), keep)
