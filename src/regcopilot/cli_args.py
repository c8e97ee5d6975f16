"""The CLI's shared parameters: one way to name a user on every command (id or email,
positional), with the older `--email` option kept as an alias where a command had it."""

from __future__ import annotations

from typing import Annotated

import typer

USER_HELP = "User id or email (`regcopilot users list` shows them)."

UserArg = Annotated[str, typer.Argument(metavar="USER", help=USER_HELP, show_default=False)]
OptionalUserArg = Annotated[
    str | None, typer.Argument(metavar="USER", help=USER_HELP, show_default=False)
]
EmailAlias = Annotated[
    str | None,
    typer.Option("--email", metavar="EMAIL", help="Same as USER (kept for older scripts).",
                 show_default=False),
]


def one_user(user: str | None, email: str | None) -> str:
    """USER or --email, exactly one of them (exit 2 otherwise, as Typer's own usage errors)."""
    if (user is None) == (email is None):
        typer.echo("error: name the user once: USER (an id or an email) or --email", err=True)
        raise typer.Exit(2)
    return user or email or ""
