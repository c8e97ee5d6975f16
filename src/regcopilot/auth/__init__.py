"""Sessions: tokens, passwords, revocations and the SessionValidator."""
