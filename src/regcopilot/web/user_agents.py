"""A session's user agent in words: "Chrome 131 on Linux", from ua-parser (uap-core's rules,
kept up to date upstream) rather than a hand-kept table. Cutting the raw header at N characters
showed "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Ge"."""

from __future__ import annotations

from functools import lru_cache

from ua_parser import parse

MAX_RAW = 40  # an agent no rule knows (a script, a monitor) is shown this long, at a word end
# ua-parser's names, as people say them now.
RENAMED = {"Mac OS X": "macOS"}


@lru_cache(maxsize=4096)
def browser_name(agent: str | None) -> str | None:
    if not agent:
        return None
    found = parse(agent)
    ua, system = found.user_agent, found.os
    browser = None
    if ua is not None and ua.family != "Other":
        browser = f"{ua.family} {ua.major}" if ua.major else ua.family
    where = RENAMED.get(system.family, system.family) if system is not None else None
    if where == "Other":
        where = None
    if browser and where:
        return f"{browser} on {where}"
    if browser or where:
        return browser or where
    return _shortened(agent)


def _shortened(agent: str) -> str:
    if len(agent) <= MAX_RAW:
        return agent
    cut = agent.rfind(" ", 0, MAX_RAW)
    return agent[: cut if cut > 0 else MAX_RAW] + "…"
