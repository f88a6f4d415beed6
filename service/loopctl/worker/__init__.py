"""The background worker: webhook delivery plus periodic jobs other areas register.

`loopctl worker` runs one; `loopctl serve` on the embedded database runs one in a thread.
Any number may run against the same database: deliveries are claimed with
`FOR UPDATE SKIP LOCKED` and a lease (see functions/webhooks.sql).
"""

from loopctl.worker.jobs import JobContext, PeriodicJob, periodic, sql_job
from loopctl.worker.runner import BackgroundWorker, Worker, run_worker

__all__ = ["BackgroundWorker", "JobContext", "PeriodicJob", "Worker", "periodic", "run_worker",
           "sql_job"]
