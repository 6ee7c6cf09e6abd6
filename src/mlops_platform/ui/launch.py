"""How `mlops serve ui` starts Streamlit: one place for the command line, shared with `mlops up`."""

from __future__ import annotations

import sys
from pathlib import Path

from mlops_platform.settings import Settings

APP = Path(__file__).with_name("app.py")


def streamlit_command(settings: Settings) -> list[str]:
    """``streamlit run`` on the UI, headless and without usage statistics."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        settings.ui_host,
        "--server.port",
        str(settings.ui_port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",  # no "Deploy" button: this app is deployed by the platform
    ]
