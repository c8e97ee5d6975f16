"""Authentication metrics: recorded per process, totalled for the cluster in Redis."""
