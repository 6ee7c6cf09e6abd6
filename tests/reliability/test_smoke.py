"""The platform the scenarios share is up, with a model in production."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import Platform, Scenario

pytestmark = pytest.mark.reliability


def test_the_platform_is_up_with_a_model(platform: Platform, scenario: Scenario) -> None:
    with platform.api() as api:
        model = api.get("/model").json()
    assert model["version"]
    scenario.report(f"serving v{model['version']}", version=model["version"])
