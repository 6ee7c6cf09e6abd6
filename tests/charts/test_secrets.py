"""secrets chart: the Secret names/keys contract, generation, given values, keep-on-upgrade."""

from __future__ import annotations

import base64
import re

import pytest
import yaml

from tests.charts.conftest import CHARTS_DIR, HelmError, by_kind, render_chart

# The contract the other charts (and issue 7's airflow, fastapi, streamlit) read: charts/README.md.
DATABASES = ["airflow", "mlflow", "rawdata", "cleandata"]
CONTRACT = {
    "postgres-credentials": {"postgres-password", "reader-username", "reader-password"}
    | {f"{db}-{part}" for db in DATABASES for part in ("username", "password")},
    "redis-credentials": {"redis-password"},
    "minio-credentials": {"root-user", "root-password", "mlflow-access-key", "mlflow-secret-key"},
    "mlflow-credentials": {"db-username", "db-password", "s3-access-key", "s3-secret-key"},
    "airflow-credentials": {
        "db-username",
        "db-password",
        "rawdata-username",
        "rawdata-password",
        "cleandata-username",
        "cleandata-password",
        "redis-password",
        "fernet-key",
        "api-secret-key",
        "jwt-secret",
        "admin-username",
        "admin-password",
        "hook-token",
    },
    "grafana-credentials": {"admin-user", "admin-password"},
    "fastapi-credentials": {"hook-token", "rawdata-username", "rawdata-password"},
    # The UI holds only the read-only role, never a database owner's login.
    "streamlit-credentials": {"db-username", "db-password"},
}


def decoded(values: dict | None = None) -> dict[str, dict[str, str]]:
    return {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for s in by_kind(render_chart("secrets", values), "Secret")
    }


def test_secret_names_and_keys_are_the_contract() -> None:
    secrets = decoded()
    assert {name: set(data) for name, data in secrets.items()} == CONTRACT
    for secret in by_kind(render_chart("secrets"), "Secret"):
        assert secret["type"] == "Opaque"
        assert secret["metadata"]["namespace"] == "mlops"


def test_values_yaml_holds_no_password() -> None:
    values = yaml.safe_load((CHARTS_DIR / "secrets" / "values.yaml").read_text())

    def secrets_in(node: object, path: str = "") -> list[str]:
        if isinstance(node, dict):
            return [p for k, v in node.items() for p in secrets_in(v, f"{path}.{k}")]
        key = path.rsplit(".", 1)[-1].lower()
        sensitive = key != "secretname" and any(
            w in key for w in ("password", "secret", "token", "fernet", "key")
        )
        return [path] if sensitive and node not in ("", None) else []

    assert secrets_in(values) == []


def test_unset_values_are_generated_random_and_url_safe() -> None:
    first = decoded()
    # A second render (another values dict, so no cache) generates other values.
    second = decoded({"generatedLength": 32})
    for name in ("postgres-credentials", "redis-credentials", "grafana-credentials"):
        for key, value in first[name].items():
            if key.endswith("password"):
                assert re.fullmatch(r"[A-Za-z0-9]{32}", value), (name, key)
                assert value != second[name][key], f"{name}/{key} was not generated"
    fernet = base64.urlsafe_b64decode(first["airflow-credentials"]["fernet-key"])
    assert len(fernet) == 32, "a Fernet key is 32 url-safe base64-encoded bytes"
    assert len(decoded({"generatedLength": 48})["redis-credentials"]["redis-password"]) == 48


def test_shared_credentials_are_identical_in_every_copy() -> None:
    s = decoded()
    pg = s["postgres-credentials"]
    assert s["mlflow-credentials"]["db-password"] == pg["mlflow-password"]
    assert s["airflow-credentials"]["db-password"] == pg["airflow-password"]
    for consumer in ("airflow-credentials", "fastapi-credentials"):
        assert s[consumer]["rawdata-password"] == pg["rawdata-password"]
        assert s[consumer]["rawdata-username"] == pg["rawdata-username"] == "rawdata"
    assert s["airflow-credentials"]["cleandata-password"] == pg["cleandata-password"]
    assert s["streamlit-credentials"]["db-username"] == pg["reader-username"] == "reader"
    assert s["streamlit-credentials"]["db-password"] == pg["reader-password"]
    owners = {pg[f"{db}-username"] for db in DATABASES}
    owner_passwords = {pg[f"{db}-password"] for db in DATABASES}
    assert pg["reader-username"] not in owners
    assert s["streamlit-credentials"]["db-password"] not in owner_passwords
    assert s["minio-credentials"]["mlflow-access-key"] == s["mlflow-credentials"]["s3-access-key"]
    assert s["minio-credentials"]["mlflow-secret-key"] == s["mlflow-credentials"]["s3-secret-key"]
    assert s["airflow-credentials"]["redis-password"] == s["redis-credentials"]["redis-password"]
    assert s["airflow-credentials"]["hook-token"] == s["fastapi-credentials"]["hook-token"]


def test_given_values_are_used_verbatim() -> None:
    s = decoded(
        {
            "postgres": {
                "databases": {"rawdata": {"username": "raw_app", "password": "raw-pw"}},
                "reader": {"username": "ui_reader", "password": "reader-pw"},
            },
            "minio": {"rootUser": "root-admin", "rootPassword": "root-pw"},
            "fastapi": {"hookToken": "hook-1"},
        }
    )
    assert s["postgres-credentials"]["rawdata-username"] == "raw_app"
    assert s["postgres-credentials"]["rawdata-password"] == "raw-pw"
    assert s["fastapi-credentials"]["rawdata-password"] == "raw-pw"
    assert s["minio-credentials"]["root-user"] == "root-admin"
    assert s["minio-credentials"]["root-password"] == "root-pw"
    assert s["airflow-credentials"]["hook-token"] == "hook-1"
    assert s["postgres-credentials"]["reader-username"] == "ui_reader"
    assert s["streamlit-credentials"]["db-username"] == "ui_reader"
    assert s["streamlit-credentials"]["db-password"] == "reader-pw"


def test_existing_values_are_looked_up_so_upgrades_keep_them() -> None:
    """`helm template` has no cluster, so `lookup` is checked in the template itself: every
    credential goes through secrets.value, which reads the stored Secret before generating."""
    helpers = (CHARTS_DIR / "secrets" / "templates" / "_helpers.tpl").read_text()
    template = (CHARTS_DIR / "secrets" / "templates" / "secrets.yaml").read_text()
    assert 'lookup "v1" "Secret" .root.Release.Namespace .secret' in helpers
    assert "randAlphaNum" not in template, "generate only through secrets.value"
    assert template.count('include "secrets.value"') >= 13


def test_secrets_are_kept_on_uninstall_by_default() -> None:
    for secret in by_kind(render_chart("secrets"), "Secret"):
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for secret in by_kind(render_chart("secrets", {"keepOnUninstall": False}), "Secret"):
        assert "helm.sh/resource-policy" not in secret["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": {"password": "p@ss word"}}, "/redis/password"),
        (
            {"postgres": {"databases": {"rawdata": {"username": "Raw-Data", "password": ""}}}},
            "username",
        ),
        ({"airflow": {"fernetKey": "too-short"}}, "/airflow/fernetKey"),
        ({"generatedLength": 8}, "/generatedLength"),
        ({"grafana": {"adminPasword": "typo"}}, "additional properties 'adminPasword' not allowed"),
        ({"postgres": {"reader": {"username": "ui reader", "password": ""}}}, "/postgres/reader"),
        (
            {"postgres": {"reader": {"username": "cleandata", "password": ""}}},
            "is also the owner of database cleandata",
        ),
    ],
)
def test_schema_rejects_bad_credentials(values: dict, message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render_chart("secrets", values)
