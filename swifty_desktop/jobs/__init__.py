"""The job engine.

This package's ``__init__`` stays free of Qt so that worker processes (which import
``swifty_desktop.jobs.worker``) never load it: import the manager from
``swifty_desktop.jobs.manager``.
"""

from swifty_desktop.jobs.model import FINAL_STATES, JobError, JobRecord, JobStatus, Trigger

__all__ = ["FINAL_STATES", "JobError", "JobRecord", "JobStatus", "Trigger"]
