"""Recurring jobs: schedules are rows in the database; APScheduler only triggers them.

* :mod:`.rules` — cron expressions, intervals, time zones, DST, human-readable rules;
* :mod:`.store` — the ``schedules`` table (validation, claims, default schedules);
* :mod:`.planner` — what is due now: on time, catch-up or skipped (misfires);
* :mod:`.service` — :class:`~.service.SchedulerService` (Qt), which wakes on
  APScheduler's triggers and submits ordinary jobs to the JobManager;
* :mod:`.cli` — the ``schedules`` command and the headless worker's scheduler hook.

Importing this package is cheap: no Qt and no APScheduler until a submodule needs them.
"""
