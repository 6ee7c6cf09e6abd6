"""Settings: every knob from MLOPS_*, sane defaults, and bad values named at start-up."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mlops_platform.cli import app
from mlops_platform.settings import Settings, SettingsError, load_settings


def test_defaults_are_local_and_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"MLOPS_{name.upper()}", raising=False)
    settings = load_settings()
    assert settings.raw_url.endswith("/rawdata")
    assert settings.clean_url.endswith("/cleandata")
    assert settings.day == "Wednesday"
    assert settings.datasource_url == "http://127.0.0.1:8000"


def test_every_field_documents_itself() -> None:
    undocumented = [n for n, f in Settings.model_fields.items() if not f.description]
    assert undocumented == []


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_GROUP_NUMBER", "7")
    monkeypatch.setenv("MLOPS_DAY", "Tuesday")
    monkeypatch.setenv("MLOPS_DATASOURCE_URL", "http://source:80/")
    settings = load_settings()
    assert (settings.group_number, settings.day) == (7, "Tuesday")
    assert settings.datasource_url == "http://source:80"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MLOPS_GROUP_NUMBER", "zero"),
        ("MLOPS_GROUP_NUMBER", "0"),
        ("MLOPS_DAY", "Funday"),
        ("MLOPS_RAW_DB_URL", "mysql://x@y/z"),
        ("MLOPS_DATASOURCE_URL", "ftp://source"),
        ("MLOPS_TEST_FRACTION", "1.5"),
        ("MLOPS_SIM_BATCH_SIZE", "-3"),
        ("MLOPS_MODEL_FAMILIES", "forest"),
        ("MLOPS_MODEL_FAMILIES", "hgb, linear_trees"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_model_families_are_names_each_once_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().families == ("linear_trees",)
    monkeypatch.setenv("MLOPS_MODEL_FAMILIES", "linear_trees,hgb,linear_trees")
    assert load_settings().families == ("linear_trees", "hgb")


def test_cli_fails_at_start_up_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_DAY", "Funday")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert "MLOPS_DAY" in result.output


def test_settings_travel_to_a_child_process_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = load_settings(group_number=4, day="Friday", sim_csv="/data/listings.csv")
    for name, value in original.to_env().items():
        monkeypatch.setenv(name, value)
    assert load_settings() == original


def test_replace_validates_and_names_the_variable() -> None:
    settings = load_settings().replace(raw_db_url="postgresql://a:b@host:1/db", group_number=3)
    assert settings.raw_url.endswith("@host:1/db")
    assert settings.group_number == 3
    with pytest.raises(SettingsError, match="MLOPS_GROUP_NUMBER"):
        settings.replace(group_number=0)


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_sleep_when_idle_unless_the_user_says_otherwise(
    given: str | None, expected: str
) -> None:
    """Spinning OpenMP threads made a busy machine's fits 7x slower (docs/BENCHMARKS.md)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, mlops_platform; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected
