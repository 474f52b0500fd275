"""The frozen one-folder bundle (PyInstaller, packaging/swifty-desktop.spec).

One build (about a minute on CI's two cores) serves every check: the bundle's
self-test (window offscreen, a job of each local kind in worker processes, the
outputs), a job submitted from its CLI that must run in a separate worker
process of the frozen executable, the other CLI commands including the headless
``worker`` with its scheduler, and ``install.sh`` into a temporary prefix.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "swifty-desktop.spec"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "SWIFTY_DATA_DIR", "PYTHONHOME")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the bundle once for this module; its executable."""
    work = tmp_path_factory.mktemp("pyinstaller")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
         "--distpath", str(work / "dist"), "--workpath", str(work / "build"), str(SPEC)],
        cwd=work, env=_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"PyInstaller failed:\n{result.stderr[-6000:]}"
    exe = work / "dist" / "swifty-desktop" / "swifty-desktop"
    assert exe.is_file() and os.access(exe, os.X_OK)
    sys.stderr.write(f"\n[bundle built in {time.monotonic() - started:.0f} s]\n")
    return exe


def run(exe: Path, *args: str, cwd: Path, timeout: float = 120, expect: int = 0
        ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(exe), *args], cwd=cwd, env=_env(), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == expect, (
        f"swifty-desktop {' '.join(args)} exited {result.returncode} (expected {expect})\n"
        f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}")
    return result


@pytest.mark.slow
def test_the_bundle_passes_its_self_test(bundle: Path, tmp_path: Path) -> None:
    internal = bundle.parent / "_internal"
    out = run(bundle, "--data-dir", str(tmp_path / "data"), "--self-test", cwd=tmp_path,
              timeout=180).stdout
    assert "Self-test passed" in out and "FAIL" not in out, out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("ok ")}
    assert "(frozen bundle)" in lines["start"], lines["start"]
    assert f"ui from {internal / 'ui'};" in lines["window"], lines["window"]
    assert f"resources from {internal / 'resources'}" in lines["window"], lines["window"]
    assert "DejaVu Sans" in lines["report_pdf"], lines["report_pdf"]


@pytest.mark.slow
def test_a_job_from_the_bundles_cli_runs_in_a_worker_process(bundle: Path,
                                                             tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    proc = subprocess.Popen([str(bundle), "--data-dir", data, "jobs", "submit", "noop",
                             "-p", "mark=true", "--wait", "--json"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    job = json.loads(stdout)
    assert job["status"] == "completed"
    worker_pid = job["result"]["pid"]
    assert worker_pid != proc.pid, "the job ran in the CLI's own process, not in a worker"
    shown = json.loads(run(bundle, "--data-dir", data, "jobs", "show", str(job["id"]), "--json",
                           cwd=tmp_path).stdout)
    assert f"ran in process {worker_pid}" in shown["log"]


@pytest.mark.slow
def test_every_cli_command_works_frozen(bundle: Path, tmp_path: Path) -> None:
    data = str(tmp_path / "data")

    def cli(*args: str, expect: int = 0) -> str:
        return run(bundle, "--data-dir", data, *args, cwd=tmp_path, expect=expect).stdout

    assert run(bundle, "--version", cwd=tmp_path).stdout.split() == ["swifty-desktop", "0.1.0"]
    kinds = {k["name"] for k in json.loads(cli("kinds", "--json"))}
    assert {"export", "import_csv", "report_pdf", "archive", "demo_seed", "noop",
            "catalog_sync", "exchange_rates", "email_batch"} <= kinds
    assert "200 products" in cli("demo", "seed", "--size", "small")
    failed = json.loads(cli("jobs", "submit", "fail", "--wait", "--json", expect=1))
    assert failed["status"] == "failed" and "failing on purpose" in failed["error"]["message"]
    queued = json.loads(cli("jobs", "submit", "sleep", "-p", "seconds=30", "--json"))
    assert "Cancelled" in cli("jobs", "cancel", str(queued["id"]))
    retry = json.loads(cli("jobs", "retry", str(failed["id"]), "--json"))
    assert retry["status"] == "queued" and retry["retry_of"] == failed["id"]
    cli("schedules", "add", "tick", "noop", "--every", "1")
    assert "tick" in cli("schedules", "list")

    # the headless engine runs the queued retry and fires the schedule, then stops on SIGTERM
    worker = subprocess.Popen([str(bundle), "--data-dir", data, "worker", "--workers", "1",
                               "--grace", "5"], cwd=tmp_path, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with sqlite3.connect(f"file:{data}/swifty.db?mode=ro", uri=True) as db:
                jobs = db.execute("SELECT id, kind, status FROM jobs").fetchall()
            ticks = [j for j in jobs if j[1] == "noop" and j[2] == "completed"]
            if ticks and (retry["id"], "fail", "failed") in jobs:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the frozen worker did not run the jobs: {jobs}")
    finally:
        worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "Worker stopped." in err
    assert "Removed schedule" in cli("schedules", "remove", "tick")
    listed = json.loads(cli("jobs", "list", "--json", "--status", "cancelled"))
    assert [j["id"] for j in listed] == [queued["id"]]


@pytest.mark.slow
def test_install_sh_puts_the_bundle_in_a_prefix_with_its_menu_entry(bundle: Path,
                                                                    tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    script = bundle.parent / "install.sh"
    subprocess.run(["sh", str(script), "--prefix", str(prefix)], check=True, timeout=120,
                   capture_output=True)
    exe = prefix / "bin" / "swifty-desktop"
    assert run(exe, "--version", cwd=tmp_path).stdout.startswith("swifty-desktop ")
    entry = (prefix / "share" / "applications" / "com.swifty.Desktop.desktop").read_text()
    assert f"Exec={exe}\n" in entry
    assert (prefix / "share" / "icons" / "hicolor" / "48x48" / "apps"
            / "com.swifty.Desktop.png").is_file()
    assert (prefix / "share" / "metainfo" / "com.swifty.Desktop.metainfo.xml").is_file()
    subprocess.run(["sh", str(script), "--prefix", str(prefix), "--uninstall"], check=True,
                   timeout=60, capture_output=True)
    assert not exe.exists() and not (prefix / "lib" / "swifty-desktop").exists()
