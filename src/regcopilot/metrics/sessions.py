"""The session records' metrics: issued, revoked by reason, active now.

Issued and revoked are counters kept with the other authentication counters (cluster totals
with Redis); active sessions are counted in the session records table when asked, so every
instance reports the same number and it survives restarts.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from regcopilot.names import Count
from regcopilot.users.directory import DirectoryUnavailable

NS = "regcopilot"
REVOKED = {  # label value → counter name in the snapshot
    "logout": Count.SESSIONS_REVOKED_LOGOUT,
    "user": Count.SESSIONS_REVOKED_USER,
    "admin": Count.SESSIONS_REVOKED_ADMIN,
    "ban_or_delete": Count.SESSIONS_REVOKED_BAN_OR_DELETE,
}


async def active_sessions(services: Any) -> int | None:
    """Unexpired, unrevoked session records; None when the directory cannot answer."""
    try:
        return await services.sessions.records.count_active()
    except DirectoryUnavailable:
        return None


def sessions_block(counters: dict[str, int], active: int | None, revoked_in_memory: int
                   ) -> dict[str, Any]:
    return {
        "issued": counters.get(Count.SESSIONS_ISSUED, 0),
        "revoked": {
            "logout": counters.get(Count.SESSIONS_REVOKED_LOGOUT, 0),
            "user": counters.get(Count.SESSIONS_REVOKED_USER, 0),
            "admin": counters.get(Count.SESSIONS_REVOKED_ADMIN, 0),
            "banOrDelete": counters.get(Count.SESSIONS_REVOKED_BAN_OR_DELETE, 0),
        },
        "active": active,
        "revokedHeldInMemory": revoked_in_memory,
    }


def session_families(counters: dict[str, int] | None, active: int | None) -> list[Metric]:
    out: list[Metric] = []
    if counters is not None:
        out.append(CounterMetricFamily(f"{NS}_sessions_issued", "Sessions issued (sign-ins).",
                                       value=counters.get(Count.SESSIONS_ISSUED, 0)))
        revoked = CounterMetricFamily(f"{NS}_sessions_revoked",
                                      "Sessions revoked, by reason.", labels=["reason"])
        for label, name in REVOKED.items():
            revoked.add_metric([label], counters.get(name, 0))
        out.append(revoked)
    if active is not None:
        out.append(GaugeMetricFamily(f"{NS}_sessions_active",
                                     "Unexpired, unrevoked session records.", value=active))
    return out
