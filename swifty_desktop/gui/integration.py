"""Where the window meets optional features: first-run welcome, the scheduler."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from sqlalchemy import Engine, func, select

from swifty_desktop.db.models import Customer, Job, Order, Product
from swifty_desktop.jobs.model import Trigger
from swifty_desktop.settings import Settings
from swifty_desktop.tasks import registry

log = logging.getLogger(__name__)

WELCOME_KEY = "app.welcome_done"


def is_first_run(engine: Engine) -> bool:
    """An empty data directory the user has not seen before."""
    if Settings(engine).get(WELCOME_KEY):
        return False
    with engine.connect() as conn:
        for table in (Product, Customer, Order, Job):
            if conn.execute(select(func.count()).select_from(table)).scalar_one():
                return False
    return True


def welcome(window: Any) -> str:
    """Offer sample data or an empty start; remember that the question was asked."""
    from swifty_desktop.gui.forms import WelcomeDialog

    dialog = WelcomeDialog(str(window.data_dir.root), window)
    window.welcome_dialog = dialog
    dialog.exec()
    Settings(window.manager.store.engine).set(WELCOME_KEY, True)
    if dialog.choice == "sample" and "demo_seed" in registry():
        job_id = window.manager.submit("demo_seed", {}, Trigger.user("Load sample data"))
        window.statusBar().showMessage(
            f"Loading sample data in the background (job #{job_id}); the tabs fill in when "
            "it is done.", 10000)
        window.show_registry()
    return dialog.choice


def start_scheduler(services: Any, manager: Any) -> Any:
    """The app's scheduler (QtScheduler), when the scheduling feature is installed."""
    if importlib.util.find_spec("swifty_desktop.scheduling.service") is None:
        return None
    from swifty_desktop.scheduling import service

    starter = getattr(service, "start_qt_scheduler", None)
    if starter is None:
        return None
    return starter(services, manager)
