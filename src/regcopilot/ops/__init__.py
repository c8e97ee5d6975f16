"""Operator tools: the guide's monitoring table, troubleshooting and cost model as commands,
and the Prometheus exposition of the authentication metrics."""
