"""Pipelines run by `mlops up` and `mlops demo` talk a lot (MLflow's run links, progress bars,
INFO logs): their output goes to a log file, and the commands print one line per step instead."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def quiet(log_file: Path) -> Iterator[None]:
    """stdout, stderr and the ``mlflow`` logger into ``log_file`` (appended) for the block."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    loggers = [logging.getLogger(name) for name in ("mlflow", "mlops_platform", "alembic")]
    levels = [logger.level for logger in loggers]
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    with (
        log_file.open("a") as out,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(out),
    ):
        for logger in loggers:
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.removeHandler(handler)
                logger.setLevel(level)
                logger.propagate = True
            handler.close()
