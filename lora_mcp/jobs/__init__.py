"""Everything slow is a job: SQLite records, a directory per job, a supervised child process, a manager with lanes."""
