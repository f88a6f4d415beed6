"""Jobs every worker runs."""

from loopctl.worker.jobs import sql_job

# Links committed audit entries into each tenant's hash chain (functions/audit.sql).
sql_job("audit.seal", 1.0, "select audit.seal_all()", requires_function="audit.seal_all(integer)")
