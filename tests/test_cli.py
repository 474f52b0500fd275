"""The command line is a public contract: its output shapes and exit codes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from helpers import run_cli, run_json

JOB_KEYS = {"id", "kind", "title", "status", "trigger", "params", "attempt", "retry_of",
            "created_at", "started_at", "finished_at", "progress", "message", "output_path",
            "result", "error"}


def job_count(data_dir: Path) -> int:
    if not (data_dir / "swifty.db").exists():
        return 0
    with sqlite3.connect(data_dir / "swifty.db") as conn:
        return conn.execute("SELECT count(*) FROM jobs").fetchone()[0]


def test_kinds_lists_every_kind_with_parameters(tmp_path: Path) -> None:
    kinds = run_json(tmp_path, "kinds", "--json")
    by_name = {k["name"]: k for k in kinds}
    assert {"noop", "sleep", "fail", "crash", "burn"} <= set(by_name)
    seconds = next(p for p in by_name["sleep"]["params"] if p["name"] == "seconds")
    assert seconds == {"name": "seconds", "type": "float", "required": False, "default": 1.0,
                       "help": "how long to wait"}
    text = run_cli(tmp_path, "kinds").stdout
    assert "sleep" in text and "seconds?:float" in text


def test_submit_wait_json_prints_the_completed_job(tmp_path: Path) -> None:
    job = run_json(tmp_path, "jobs", "submit", "sleep", "-p", "seconds=0.2", "--wait", "--json")
    assert set(job) >= JOB_KEYS
    assert job["status"] == "completed" and job["kind"] == "sleep"
    assert job["params"] == {"seconds": 0.2, "checkpoints": False, "ignore_cancel": False}
    assert job["trigger"]["type"] == "cli"
    assert job["result"]["slept"] == 0.2 and job["error"] is None
    assert job["created_at"].endswith("+00:00") and job["finished_at"] >= job["started_at"]


def test_submit_wait_exits_non_zero_with_the_error_when_the_job_fails(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "jobs", "submit", "fail", "-p", "message=disk on fire", "--wait")
    assert proc.returncode == 1
    assert "failed" in proc.stdout and "disk on fire" in proc.stdout
    job = json.loads(run_cli(tmp_path, "jobs", "show", "1", "--json").stdout)
    assert job["error"]["type"] == "TaskError" and job["error"]["message"] == "disk on fire"
    assert "Traceback" in job["error"]["traceback"] and job["log"] == ["attempt 1"]


def test_submit_without_wait_queues_and_list_and_show_read_it(tmp_path: Path) -> None:
    queued = run_json(tmp_path, "jobs", "submit", "noop", "--json")
    assert queued["status"] == "queued" and queued["id"] == 1
    listed = run_json(tmp_path, "jobs", "list", "--json")
    assert [j["id"] for j in listed] == [1]
    assert run_json(tmp_path, "jobs", "list", "--status", "failed", "--json") == []
    assert "Command line" in run_cli(tmp_path, "jobs", "show", "1").stdout
    cancel = run_cli(tmp_path, "jobs", "cancel", "1")
    assert cancel.returncode == 0 and "had not started" in cancel.stdout
    assert run_json(tmp_path, "jobs", "show", "1", "--json")["status"] == "cancelled"
    retried = run_json(tmp_path, "jobs", "retry", "1", "--wait", "--json")
    assert (retried["status"], retried["attempt"], retried["retry_of"]) == ("completed", 2, 1)


@pytest.mark.parametrize("args,message", [
    (["jobs", "submit", "teleport"], "unknown job kind 'teleport'; known kinds:"),
    (["jobs", "submit", "sleep", "-p", "seconds=soon"], "parameter 'seconds' must be a number"),
    (["jobs", "submit", "sleep", "-p", "nonsense"], "must look like key=value"),
    (["jobs", "submit", "sleep", "-p", "color=red"], "has no parameter 'color'"),
    (["jobs", "list", "--status", "sleepy"], "unknown status 'sleepy'"),
    (["jobs", "list", "--kind", "teleport"], "unknown job kind 'teleport'; `swifty-desktop kinds`"),
    (["jobs", "frobnicate"], "invalid choice: 'frobnicate'"),
    (["jobs", "show", "forty-two"], "'forty-two' is not a job id"),
    (["jobs", "submit"], "the following arguments are required: kind"),
])
def test_bad_input_gets_one_line_exit_2_and_writes_nothing(tmp_path: Path, args, message):
    proc = run_cli(tmp_path, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert job_count(tmp_path) == 0


@pytest.mark.parametrize("args,message", [
    (["jobs", "show", "42"], "there is no job #42"),
    (["jobs", "retry", "42"], "there is no job #42"),
    (["jobs", "cancel", "42"], "there is no job #42"),
])
def test_unknown_ids_are_named(tmp_path: Path, args, message) -> None:
    proc = run_cli(tmp_path, *args)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "swifty.db").exists()  # asking about nothing writes nothing
    run_json(tmp_path, "jobs", "submit", "noop", "--json")  # with a database, the same
    again = run_cli(tmp_path, *args)
    assert again.returncode == 2 and message in again.stderr


def test_listing_an_empty_data_directory_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    proc = run_cli(empty, "jobs", "list", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
    assert not empty.exists()


def test_cancel_of_a_job_whose_engine_died_cancels_it_at_once(tmp_path: Path) -> None:
    import socket

    from swifty_desktop.bootstrap import open_database
    from swifty_desktop.jobs.model import Trigger
    from swifty_desktop.jobs.store import JobStore
    from swifty_desktop.paths import DataDir

    engine = open_database(DataDir(tmp_path).ensure())
    store = JobStore(engine)
    job_id = store.insert("sleep", "Sleep", {"seconds": 60}, Trigger("api"))
    store.claim([job_id], f"{socket.gethostname()}:999999:worker:abc", lease_s=3600)
    proc = run_cli(tmp_path, "jobs", "cancel", str(job_id))
    assert proc.returncode == 0, proc.stderr
    assert "the engine that was running it had stopped" in proc.stdout
    job = store.get(job_id)
    assert job.status.value == "cancelled" and "pid 999999" in job.message
    store.close()
    engine.dispose()


def test_retry_of_a_completed_job_is_refused(tmp_path: Path) -> None:
    run_json(tmp_path, "jobs", "submit", "noop", "--wait", "--json")
    proc = run_cli(tmp_path, "jobs", "retry", "1")
    assert proc.returncode == 2
    assert "job #1 is completed; only failed, cancelled or interrupted" in proc.stderr


def test_a_secret_parameter_without_a_keyring_is_refused_not_stored(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "jobs", "submit", "catalog_sync", "-p", "consumer_secret=cs_1",
                   "-p", "base_url=http://127.0.0.1:9", "-p", "consumer_key=ck_1")
    assert proc.returncode == 2
    assert "parameter 'consumer_secret' is a secret" in proc.stderr
    assert "Settings" in proc.stderr
    assert job_count(tmp_path) == 0


def test_a_relative_input_path_is_read_from_where_the_command_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    from helpers import cli_env

    here = tmp_path / "shop files"
    here.mkdir()
    (here / "products.csv").write_text("sku,name,price,currency,stock\nA-1,Widget,9.50,EUR,3\n",
                                       encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "swifty_desktop", "--data-dir", str(tmp_path / "data"), "jobs",
         "submit", "import_csv", "-p", "path=products.csv", "-p", "table=products", "--wait",
         "--json"], cwd=here, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)
    assert job["params"]["path"] == str(here / "products.csv")
    assert job["result"]["inserted"] == 1
    text = run_cli(tmp_path / "data", "jobs", "submit", "import_csv", "-p",
                   f"path={here / 'products.csv'}", "--wait").stdout.splitlines()
    assert text[0].startswith("Job #2 completed in ")  # what it did, in words, first
    assert text[1] == "  done: 0 new and 1 updated products"
    shown = run_cli(tmp_path / "data", "jobs", "show", "2").stdout.splitlines()
    assert "  done        0 new and 1 updated products" in shown
