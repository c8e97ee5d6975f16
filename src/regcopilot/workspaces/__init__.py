"""Workspaces (the upstream's tenants): which one a session is in, and who may be in it."""
