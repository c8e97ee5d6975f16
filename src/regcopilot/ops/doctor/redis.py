"""Doctor: the layers a REDIS_URL goes through — parse, reach, TLS, auth+PING — each its own
line so the failing one is named. The URL is read by the store's own parser and failures are
worded by the store's own classifier (cache/redis.py), so doctor and app agree."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from regcopilot.cache.redis import (
    CLUSTER_SCHEMES,
    SENTINEL_SCHEMES,
    UNNEEDED_PASSWORD,
    RedisStore,
    RedisTarget,
    parse_url,
)
from regcopilot.cache.store import StoreError
from regcopilot.ops.doctor.report import WARN, Facts, Problem, Result
from regcopilot.users.problems import mask, os_reason

Step = tuple[str, Callable[[], Awaitable[str] | str]]


async def _tcp(host: str, port: int, timeout_s: float) -> float:
    started = time.perf_counter()
    try:
        _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except TimeoutError:
        raise Problem(f"cannot reach {host}:{port}: no answer within {timeout_s:g} s "
                      "(firewall or wrong host?)") from None
    except OSError as exc:
        raise Problem(f"cannot reach {host}:{port}: {os_reason(exc)}") from None
    w.close()
    return (time.perf_counter() - started) * 1000


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if "ssl_ca_certs" in options:
        ctx.load_verify_locations(options["ssl_ca_certs"])
    if str(options.get("ssl_cert_reqs", "")).lower() in ("none", "cert_none"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _tls(host: str, port: int, options: dict[str, Any], timeout_s: float) -> str:
    try:
        ctx = _tls_context(options)
        _r, w = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host), timeout_s
        )
    except TimeoutError:
        raise Problem(f"TLS handshake with {host}:{port} got no answer within {timeout_s:g} s "
                      "(is the server plain redis://?)") from None
    except ssl.SSLCertVerificationError as exc:
        raise Problem(f"TLS certificate refused: {exc.verify_message or exc} (give the CA with "
                      "?ssl_ca_certs=/path/ca.pem)") from None
    except (ssl.SSLError, ConnectionError) as exc:
        raise Problem(f"TLS handshake failed: {exc} (is the server plain redis://? "
                      "then use redis://)") from None
    except OSError as exc:
        raise Problem(f"TLS: {exc}") from None
    sslobj = w.get_extra_info("ssl_object")
    version = sslobj.version() if sslobj else "TLS"
    w.close()
    return f"{version}, certificate verified" if ctx.verify_mode != ssl.CERT_NONE else \
        f"{version}, certificate NOT verified (ssl_cert_reqs=none)"


async def _ping(store: RedisStore) -> str | Result:
    """Through the store the app talks to Redis with (built by factories.py), so a failure is
    worded as the app's log words it."""
    try:
        started = time.perf_counter()
        await store.ping()
        ms = (time.perf_counter() - started) * 1000
        version = await store.server_version() or "?"
        answered = f"PING answered in {ms:.1f} ms (Redis {version})"
        if await store.unneeded_password():  # the app's start log says the same, once
            return Result("redis auth+ping", WARN, f"{answered}; {UNNEEDED_PASSWORD}")
        return answered
    except StoreError as exc:
        line = str(exc)
        if line.startswith("authentication failed"):
            raise Problem(line) from None
        raise Problem(f"PING failed: {line}") from None
    finally:
        await store.close()


def _summary(url: str, target: RedisTarget) -> str:
    if target.scheme == "unix":
        return f"unix socket {target.hosts[0][0]}"
    if target.scheme in (*SENTINEL_SCHEMES, *CLUSTER_SCHEMES):
        return f"{target.scheme}:// (Sentinel/Cluster) {mask(url)}"
    (host, port), = target.hosts
    auth = "no password"
    if target.password is not None:
        auth = f"password as user {target.username}" if target.username else "password"
    tls = "TLS" if target.tls else "no TLS"
    return f"{mask(url)}: host {host}, port {port}, db {target.db}, {auth}, {tls}"


def _parse(url: str) -> RedisTarget:
    scheme = url.partition("://")[0].lower()
    if scheme == "unix":
        path = url.partition("://")[2].partition("?")[0]
        return RedisTarget(scheme="unix", hosts=[(path, 0)])
    try:
        return parse_url(url)
    except ValueError as exc:
        raise Problem(f"REDIS_URL {mask(url)} {exc}") from None


def redis_checks(facts: Facts) -> list[Step]:
    url = facts.redis_url if facts.settings is not None else (facts.env.get("REDIS_URL") or None)
    if not url:
        return []
    timeout_s = facts.timeout_s
    steps: list[Step] = [("redis url", lambda: _summary(url, _parse(url)))]
    try:
        target = _parse(url)
    except Problem:
        return steps  # the first step names the problem
    if target.scheme in ("redis", "rediss"):
        (host, port), = target.hosts

        async def reach() -> str:
            return f"TCP {host}:{port} open in {await _tcp(host, port, timeout_s):.1f} ms"

        steps.append(("redis reach", reach))
        if target.tls:
            async def tls() -> str:
                return await _tls(host, port, target.options, timeout_s)

            steps.append(("redis tls", tls))
    elif target.scheme == "unix":
        path = target.hosts[0][0]

        def socket_file() -> str:
            if not Path(path).exists():
                raise Problem(f"no socket at {path}")
            return f"socket {path} exists"

        steps.append(("redis reach", socket_file))

    async def ping() -> str | Result:
        return await _ping(facts.parts.store(url, timeout_s))

    steps.append(("redis auth+ping", ping))
    return steps
