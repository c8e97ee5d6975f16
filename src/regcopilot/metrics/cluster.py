"""Cluster-wide metric totals in Redis: every instance adds its deltas in one batched
pipeline a second, off the request path, and reads the same totals back."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

from regcopilot.cache.redis import connect, translated
from regcopilot.metrics.counters import (
    COUNTER_NAMES,
    HOURS_KEPT,
    LATENCY_BOUNDS_MS,
    Counters,
    Snapshot,
    hour_key,
    last_hours,
)

log = logging.getLogger("regcopilot.metrics")

HOUR_TTL = (HOURS_KEPT + 1) * 3600
INSTANCE_STALE_MS = 30_000
INSTANCE_FORGET_MS = 24 * 3600 * 1000


class ClusterMetrics:
    def __init__(self, url: str, prefix: str, instance_id: str | None = None) -> None:
        self.client = connect(url, 1.0)
        # One hash tag for every metrics key: on Redis Cluster they share a slot, so one
        # pipeline and one multi-key PFCOUNT can read them all.
        self.p = f"{prefix}{{metrics}}:"
        self.instance_id = instance_id or f"{socket.gethostname()}:{os.getpid()}"
        self.started_ms = int(time.time() * 1000)
        self._start_written = False

    async def flush(self, delta: Counters, backend: str) -> None:
        """Add a batch of deltas; raises StoreError when Redis cannot take it
        (AmbiguousStoreError: it may have taken it)."""
        p, now_ms = self.p, int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        if not self._start_written:
            pipe.set(f"{p}start", now_ms, nx=True)
        for name, n in delta.values.items():
            if n:
                pipe.hincrby(f"{p}counters", name, n)
        if delta.time_sum_ms:
            pipe.hincrby(f"{p}counters", "timeSumUs", int(delta.time_sum_ms * 1000))
        for i, n in enumerate(delta.latency):
            if n:
                pipe.hincrby(f"{p}latency", str(i), n)
        for hour, n in delta.logins_hourly.items():
            pipe.hincrby(f"{p}logins", hour, n)
        if delta.last_login_ms:
            pipe.zadd(f"{p}lastLogin", {"last": delta.last_login_ms}, gt=True)
        by_hour: dict[int, list[str]] = {}  # grouped by hour number: one strftime per hour
        for user_id, ts in delta.active.items():
            by_hour.setdefault(ts // 3_600_000, []).append(user_id)
        for hour_number, users in by_hour.items():
            hour = hour_key(hour_number * 3600)
            pipe.pfadd(f"{p}active:{hour}", *users)
            pipe.expire(f"{p}active:{hour}", HOUR_TTL)
        pipe.hset(f"{p}instances", self.instance_id, json.dumps(self._me(backend, now_ms)))
        with translated():
            await pipe.execute()
        self._start_written = True

    def _me(self, backend: str, now_ms: int) -> dict[str, Any]:
        return {
            "id": self.instance_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "startTime": self.started_ms,
            "backend": backend,
            "lastSeen": now_ms,
        }

    async def read(self) -> Snapshot:
        p = self.p
        hours = last_hours()
        pipe = self.client.pipeline(transaction=False)
        pipe.get(f"{p}start")
        pipe.hgetall(f"{p}counters")
        pipe.hgetall(f"{p}latency")
        pipe.hmget(f"{p}logins", hours)
        pipe.zscore(f"{p}lastLogin", "last")
        pipe.hgetall(f"{p}instances")
        with translated():
            start, counters, latency, logins, last, instances = await pipe.execute()
            # Outside the pipeline: redis-py's cluster pipeline refuses multi-key commands.
            active = await self.client.pfcount(*[f"{p}active:{h}" for h in hours])
        now_ms = int(time.time() * 1000)
        lat = [0] * (len(LATENCY_BOUNDS_MS) + 1)
        for i, n in latency.items():
            if i.isdigit() and int(i) < len(lat):
                lat[int(i)] = int(n)
        return Snapshot(
            start_ms=int(start) if start else self.started_ms,
            counters={name: int(counters.get(name, 0)) for name in COUNTER_NAMES},
            time_sum_ms=int(counters.get("timeSumUs", 0)) / 1000,
            latency=lat,
            logins_hourly={h: int(n) for h, n in zip(hours, logins, strict=True) if n},
            last_login_ms=int(last) if last else None,
            active_users=int(active),
            scope="cluster",
            instances=await self._instances(instances, now_ms),
        )

    async def _instances(self, raw: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        out, forget = [], []
        for key, value in raw.items():
            try:
                info = json.loads(value)
            except ValueError:
                forget.append(key)
                continue
            age = now_ms - int(info.get("lastSeen", 0))
            if age > INSTANCE_FORGET_MS:
                forget.append(key)
                continue
            info["status"] = "up" if age <= INSTANCE_STALE_MS else "stale"
            info["uptimeMs"] = max(0, now_ms - int(info.get("startTime", now_ms)))
            out.append(info)
        if forget:
            with translated():
                await self.client.hdel(f"{self.p}instances", *forget)
        return sorted(out, key=lambda i: i["id"])

    async def prune_hours(self) -> None:
        keep = set(last_hours())
        with translated():
            fields = await self.client.hkeys(f"{self.p}logins")
            old = [f for f in fields if f not in keep]
            if old:
                await self.client.hdel(f"{self.p}logins", *old)

    async def close(self) -> None:
        await self.client.aclose()


__all__ = ["ClusterMetrics"]
