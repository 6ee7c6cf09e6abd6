"""``mlops``: the platform's command line (Typer)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mlops_platform.local import commands as local_commands
from mlops_platform.local.keys import with_local_secrets
from mlops_platform.settings import Settings, SettingsError, load_settings

app = typer.Typer(help="MLOps platform for house-price prediction.", no_args_is_help=True)
db_app = typer.Typer(help="RAW and CLEAN stores.", no_args_is_help=True)
datasource_app = typer.Typer(help="The data-source API simulator.", no_args_is_help=True)
pipeline_app = typer.Typer(help="Run pipelines without Airflow.", no_args_is_help=True)
pipeline_run_app = typer.Typer(help="Run one pipeline now.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(datasource_app, name="datasource")
app.add_typer(pipeline_app, name="pipeline")
pipeline_app.add_typer(pipeline_run_app, name="run")

console = Console()


def _settings() -> Settings:
    """The settings, with the local platform's generated secrets where `mlops up` made some
    (so `mlops pipeline run` reaches its stores as the services do)."""
    try:
        settings = load_settings()
        if (settings.state_dir / "keys.json").is_file():
            settings = with_local_secrets(settings)
        return settings
    except SettingsError as error:
        console.print(f"[red]{error}[/red]\nFix the variable(s) above and run again.")
        raise typer.Exit(2) from None


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the RAW and CLEAN schemas (safe to run again)."""
    from mlops_platform.storage.migrate import upgrade_all

    settings = _settings()
    upgrade_all(settings.raw_url, settings.clean_url)
    console.print("[green]RAW and CLEAN schemas are up to date.[/green]")


@datasource_app.command("serve")
def datasource_serve(
    host: Annotated[str | None, typer.Option(help="Bind address [MLOPS_SIM_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [MLOPS_SIM_PORT].")] = None,
) -> None:
    """Serve the data-source API (synthetic listings, or MLOPS_SIM_CSV)."""
    import uvicorn

    from mlops_platform.datasource.app import app_from_settings

    settings = _settings()
    uvicorn.run(
        app_from_settings(settings),
        host=host or settings.sim_host,
        port=port or settings.sim_port,
        log_level="info",
    )


def _print_data_run(outcome: dict) -> None:
    stored, cleaned = outcome["ingest"], outcome["clean"]
    if outcome["exhausted"]:
        console.print("No more data: the source has served every batch for this group and day.")
    elif stored["stored"]:
        console.print(
            f"Batch {stored['batch_number']} (group {stored['group_number']}/{stored['day']}): "
            f"{stored['rows']} rows received and stored in RAW as batch id {stored['batch_id']}."
        )
    else:
        console.print(
            f"Batch {stored['batch_number']} was already in RAW (batch id {stored['batch_id']}):"
            " nothing stored."
        )
    table = Table(title="CLEAN")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    table.add_row("read from RAW", str(cleaned["rows_read"]))
    table.add_row("cleaned", str(cleaned["cleaned"]))
    table.add_row("  of which repaired", str(cleaned["repaired"]))
    for rule, count in cleaned["repaired_by_rule"].items():
        table.add_row(f"  repaired (set to null): {rule}", str(count))
    table.add_row("rejected", str(cleaned["rejected"]))
    for rule, count in cleaned["rejected_by_rule"].items():
        table.add_row(f"  rejected: {rule}", str(count))
    console.print(table)


@pipeline_run_app.command("data")
def pipeline_run_data(
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Fetch the next batch, store it in RAW, clean everything new into CLEAN."""
    from rich.markup import escape

    from mlops_platform.datasource.client import DataSourceError
    from mlops_platform.pipelines.data import run_data_pipeline

    _logging(verbose)
    settings = _settings()
    try:
        outcome = run_data_pipeline(settings)
    except DataSourceError as error:
        # Escaped: the message quotes the source's body, whose `[/...]` rich would read as markup.
        console.print(f"[red]{escape(str(error))}[/red]")
        raise typer.Exit(1) from None
    _print_data_run(outcome)


def _fmt(metrics: dict | None, key: str) -> str:
    if not metrics or metrics.get(key) is None:
        return "—"
    if key == "r2":
        return f"{metrics[key]:.3f}"
    if key == "mape":  # a fraction in the stores; a percentage to read
        return f"{metrics[key] * 100:.1f} %"
    return f"{metrics[key]:,.0f}"


def _print_model_run(row: dict) -> None:
    table = Table(title=f"Modeling — data {row.get('data_version')}")
    for column in ("", "candidate", "production"):
        table.add_column(column, justify="right" if column else "left")
    candidate, production = row.get("candidate_metrics"), row.get("production_metrics")
    table.add_row(
        "version",
        str(row.get("candidate_version") or "—"),
        str(row.get("production_version") or "—"),
    )
    table.add_row("family", str(row.get("candidate_family") or "—"), "")
    for key, label in (("mae", "MAE $"), ("rmse", "RMSE $"), ("r2", "R²"), ("mape", "MAPE")):
        table.add_row(label, _fmt(candidate, key), _fmt(production, key))
    console.print(table)
    drifted = row.get("drifted_features") or {}
    if drifted:
        console.print("Drifted: " + ", ".join(f"{k} (PSI {v:.2f})" for k, v in drifted.items()))
    console.print(f"Decision: [bold]{row.get('outcome')}[/bold] — {row.get('reason')}")


@pipeline_run_app.command("model")
def pipeline_run_model(
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Decide → train → evaluate → promote → explain → record, for the data in CLEAN now."""
    import os

    from mlops_platform.pipelines.modeling import run_model_pipeline

    _logging(verbose)
    settings = _settings()
    # MLflow's per-download progress bars would print through the status line below.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with console.status("modeling: deciding, training, evaluating..."):
        row = run_model_pipeline(settings)
    _print_model_run(row)


mlflow_app = typer.Typer(help="The MLflow tracking server.", no_args_is_help=True)
app.add_typer(mlflow_app, name="mlflow")
serve_app = typer.Typer(help="Serve the platform's applications.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")


@serve_app.command("api")
def serve_api(
    host: Annotated[str | None, typer.Option(help="Bind address [MLOPS_API_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [MLOPS_API_PORT].")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes [MLOPS_API_WORKERS].")] = None,
) -> None:
    """The inference API (FastAPI on uvicorn), serving the model under the production alias."""
    from mlops_platform.serving.server import run

    settings = _settings()
    overrides = {"api_host": host, "api_port": port, "api_workers": workers}
    run(settings.replace(**{k: v for k, v in overrides.items() if v is not None}))


@serve_app.command("exporter")
def serve_exporter(
    host: Annotated[str | None, typer.Option(help="Bind address [MLOPS_EXPORTER_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [MLOPS_EXPORTER_PORT].")] = None,
) -> None:
    """The ML loop's metrics for Prometheus (freshness, rejections, drift, decisions, models)."""
    from mlops_platform.monitoring.exporter import serve
    from mlops_platform.storage.engine import make_engine

    settings = _settings()
    _logging(False)
    serve(
        make_engine(settings.raw_url),
        make_engine(settings.clean_url),
        host or settings.exporter_host,
        port or settings.exporter_port,
        settings.exporter_cache_s,
    )


@serve_app.command("ui")
def serve_ui(
    host: Annotated[str | None, typer.Option(help="Bind address [MLOPS_UI_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [MLOPS_UI_PORT].")] = None,
) -> None:
    """The Streamlit UI: predictions through the API, model history, SHAP, data."""
    import os

    from mlops_platform.ui.launch import streamlit_command

    settings = _settings()
    overrides = {"ui_host": host, "ui_port": port}
    settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None})
    command = streamlit_command(settings)
    os.execvpe(command[0], command, {**os.environ, **settings.to_env()})


@mlflow_app.command("serve")
def mlflow_serve() -> None:
    """Run the MLflow server from settings (PostgreSQL metadata, S3 artifacts)."""
    import os

    from mlops_platform.local.mlflow_server import prepare_backend, server_command, server_env

    settings = _settings()
    prepare_backend(settings)
    command = server_command(settings)
    os.execvpe(command[0], command, {**os.environ, **server_env(settings)})


@mlflow_app.command("upgrade")
def mlflow_upgrade() -> None:
    """Create or migrate the MLflow metadata tables (`mlflow db upgrade`); idempotent."""
    from mlops_platform.local.mlflow_server import upgrade_backend

    upgrade_backend(_settings())
    console.print("[green]MLflow database is up to date.[/green]")


check_app = typer.Typer(
    help="Post-install checks: call a server by its Service name as its clients do (helm test).",
    no_args_is_help=True,
)
app.add_typer(check_app, name="check")


def _check(check: Callable[[], str], within_s: float) -> None:
    """Run ``check`` (retrying for ``within_s``): its sentence, or the failure and exit 1."""
    from mlops_platform.checks import CheckFailed, retrying

    try:
        console.print(f"[green]ok[/green] {retrying(check, within_s)}", soft_wrap=True)
    except CheckFailed as error:
        console.print(f"[red]failed[/red] {error}", soft_wrap=True)
        raise typer.Exit(1) from None


Within = Annotated[float, typer.Option(help="Keep retrying a failing check this long (s).")]


@check_app.command("http")
def check_http(url: str, within: Within = 60.0) -> None:
    """GET URL answers 200 (mlflow /health, Airflow's /api/v2/monitor/health, ...)."""
    from mlops_platform import checks

    _check(lambda: checks.http_ok(url), within)


@check_app.command("fastapi")
def check_fastapi(url: str, within: Within = 60.0) -> None:
    """The inference API is ready; once a model is in production, it predicts a price."""
    from mlops_platform import checks

    _check(lambda: checks.fastapi(url), within)


@check_app.command("prometheus")
def check_prometheus(
    url: str,
    job: Annotated[str, typer.Option(help="Scrape job that must be up.")] = "fastapi",
    within: Within = 60.0,
) -> None:
    """Prometheus is ready and the scrape target of JOB is up."""
    from mlops_platform import checks

    _check(lambda: checks.prometheus(url, job), within)


@check_app.command("grafana")
def check_grafana(
    url: str,
    datasource: Annotated[str, typer.Option(help="Provisioned datasource name.")] = "Prometheus",
    user: Annotated[str, typer.Option(envvar="GRAFANA_USER", help="Admin user.")] = "admin",
    password: Annotated[str, typer.Option(envvar="GRAFANA_PASSWORD", help="Admin password.")] = "",
    within: Within = 60.0,
) -> None:
    """Grafana is healthy and its provisioned DATASOURCE answers."""
    from mlops_platform import checks

    _check(lambda: checks.grafana(url, user, password, datasource), within)


@check_app.command("s3")
def check_s3(
    endpoint: str,
    bucket: Annotated[str, typer.Option(help="Bucket that must exist.")] = "mlflow",
    access_key: Annotated[str, typer.Option(envvar="AWS_ACCESS_KEY_ID")] = "",
    secret_key: Annotated[str, typer.Option(envvar="AWS_SECRET_ACCESS_KEY")] = "",
    within: Within = 60.0,
) -> None:
    """The S3 API at ENDPOINT has BUCKET and lets the identity list it."""
    from mlops_platform import checks

    _check(lambda: checks.s3_bucket(endpoint, bucket, access_key, secret_key), within)


@check_app.command("postgres")
def check_postgres(
    host: str,
    database: Annotated[
        list[str],
        typer.Option(
            help="Database to log in to, as its own user: <DB>_USERNAME and <DB>_PASSWORD "
            "(upper case) hold the login. Repeat for each."
        ),
    ],
    port: int = 5432,
    within: Within = 60.0,
) -> None:
    """PostgreSQL accepts each database's own user."""
    import os

    from mlops_platform import checks

    logins = []
    for name in database:
        prefix = name.upper().replace("-", "_")
        user, password = (os.environ.get(f"{prefix}_{key}") for key in ("USERNAME", "PASSWORD"))
        if not user or not password:
            console.print(f"[red]failed[/red] set {prefix}_USERNAME and {prefix}_PASSWORD")
            raise typer.Exit(2)
        logins.append(checks.Login(name, user, password))
    _check(lambda: checks.postgres_logins(host, port, logins), within)


@check_app.command("redis")
def check_redis(
    host: str,
    port: int = 6379,
    password: Annotated[str, typer.Option(envvar="REDIS_PASSWORD")] = "",
    within: Within = 60.0,
) -> None:
    """Redis answers PING after AUTH with the password (as Celery connects)."""
    from mlops_platform import checks

    _check(lambda: checks.redis_ping(host, port, password), within)


local_commands.register(app, _settings)


if __name__ == "__main__":
    app()
