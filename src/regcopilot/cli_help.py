"""Typer's help, read the way people expect: no `<bool>` beside a flag such as `--help` (a flag
takes no value), and arguments in the usage line as `USER` / `[USER]`, not `{user}`.

Typer 0.29 (measured with 0.29.2 on Click 8.5.1) types every option in its help table, flags
included, and wraps required arguments in braces; 0.28 did not type flags. Neither has a
setting for it (rich_markup_mode=None only drops the flag types from the plain formatter), so
the two display methods are adjusted here, once, when the CLI is imported. Both are looked up
before they are replaced: a Typer without them keeps its own rendering, and
tests/test_cli_help.py says so.
"""

from __future__ import annotations

from typing import Any

from typer import core

ADJUSTED = hasattr(core.TyperOption, "display_type_rich") and hasattr(
    core.TyperArgument, "_usage_display_name")


def _option_type(self: Any, ctx: Any) -> str | None:
    if self.is_flag and self.metavar is None:
        return None  # `--help`, `--all`, `--soft/--hard`: nothing follows them
    return _typed(self, ctx)


def _argument_usage(self: Any) -> str:
    name = self.metavar or (self.name or "").upper()
    name = name if self.required else f"[{name}]"
    return name + ("..." if self.nargs != 1 else "")


if ADJUSTED:
    _typed = core.TyperOption.display_type_rich
    core.TyperOption.display_type_rich = _option_type  # type: ignore[method-assign]
    core.TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign]
