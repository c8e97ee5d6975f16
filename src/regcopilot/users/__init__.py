"""The user directory: the source of truth every session is validated against."""
