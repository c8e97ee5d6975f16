"""Regulatory Intelligence Copilot web tier."""

__version__ = "0.1.0"
