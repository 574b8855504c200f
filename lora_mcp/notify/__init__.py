"""Side effects of a job's life, delivered from a durable outbox (notify.db): signed webhooks and S3 export on success.

Both follow the job event log in jobs.db with a cursor of their own; see `outbox` for why nothing is lost.
"""
