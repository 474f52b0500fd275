"""Shared fixtures: a real data directory and SQLite file per test, real engines.

Nothing here mocks the database, the worker processes or the engine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from swifty_desktop.bootstrap import open_database  # noqa: E402
from swifty_desktop.paths import DataDir  # noqa: E402


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    return DataDir(tmp_path / "data").ensure()


@pytest.fixture
def db(data_dir: DataDir) -> Iterator[Any]:
    engine = open_database(data_dir)
    yield engine
    engine.dispose()


@pytest.fixture
def make_manager(qapp: Any, db: Any, data_dir: DataDir) -> Iterator[Callable[..., Any]]:
    """Build started JobManagers on the test's database; all are stopped afterwards."""
    from swifty_desktop.jobs.manager import JobManager

    made: list[Any] = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("workers", 2)
        kwargs.setdefault("poll_s", 0.1)
        kwargs.setdefault("grace_s", 1.0)
        manager = JobManager(kwargs.pop("engine", db), kwargs.pop("data", data_dir), **kwargs)
        manager.start()
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.stop(timeout=5)
        manager.store.close()


def wait_until(qtbot: Any, predicate: Callable[[], Any], timeout: float = 20.0,
               message: str = "") -> Any:
    """Process Qt events until ``predicate()`` is truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {message or predicate}")
        qtbot.wait(20)


def wait_final(qtbot: Any, manager: Any, job_id: int, timeout: float = 30.0) -> Any:
    """Wait until job ``job_id`` reached a final state; return its record."""
    from swifty_desktop.jobs.model import FINAL_STATES

    return wait_until(
        qtbot, lambda: (j := manager.store.get(job_id)).status in FINAL_STATES and j,
        timeout, f"job #{job_id} to finish")


@pytest.fixture
def url_catcher(qapp: Any) -> Iterator[Any]:
    """Stands in for the desktop: ``.urls`` lists what QDesktopServices would have opened
    (file URLs), instead of starting programs."""
    from PySide6.QtCore import QObject, QUrl, Slot
    from PySide6.QtGui import QDesktopServices

    class UrlCatcher(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.urls: list[QUrl] = []

        @Slot(QUrl)
        def handle(self, url: QUrl) -> None:
            self.urls.append(url)

    catcher = UrlCatcher()
    QDesktopServices.setUrlHandler("file", catcher, "handle")
    yield catcher
    QDesktopServices.unsetUrlHandler("file")
