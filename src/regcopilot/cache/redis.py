"""Redis store, shared by every instance. Short timeouts, no retries: auth never waits on a
sick Redis (redis-py's default retry/backoff took 3.8 s for one GET against a dead server).

`REDIS_URL` forms (see docs/security.md):
- `redis://[:password@]host:port[/db]`, `unix:///path.sock`;
- `rediss://[:password@]host:port[/db][?ssl_ca_certs=/ca.pem]` — TLS; the certificate is
  verified (against the system store, or the CA file given in the query string);
- `redis+sentinel://[:password@]host:port[,host:port…]/<service>[/db]` — the master that the
  Sentinels name (`rediss+sentinel://` for TLS to the data nodes);
- `redis+cluster://[:password@]host:port[,host:port…]` — a Redis Cluster (`rediss+cluster://`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisClusterException, RedisError

from regcopilot.cache.breaker import Breaker
from regcopilot.cache.store import StoreError

# RedisClusterException is not a RedisError (e.g. "keys don't hash to the same slot").
FAILURES = (RedisError, RedisClusterException, OSError, TimeoutError)
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
TLS_CONNECT_TIMEOUT_S = 0.5
# New connections are rare (pooled) but come in bursts when many requests arrive at once on a
# busy event loop (a 3-process stampede tripped the breaker at 50 ms); a refused connection
# fails at once whatever this is.
CONNECT_TIMEOUT_FLOOR_S = 0.25
SCHEMES = ("redis", "rediss", "unix", *SENTINEL_SCHEMES, *CLUSTER_SCHEMES)
# Query options given as text in the URL that redis-py expects typed.
_BOOL_OPTIONS = ("ssl_check_hostname",)


@dataclass
class RedisTarget:
    """A REDIS_URL taken apart: what to connect to and how (never logged: it holds the
    password)."""

    scheme: str
    hosts: list[tuple[str, int]]
    password: str | None = None
    username: str | None = None
    service: str | None = None  # Sentinel's master name
    db: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.scheme.startswith("rediss")


def parse_url(url: str) -> RedisTarget:
    """Parse the Sentinel and Cluster forms (several hosts, which urlsplit cannot read).
    Raises ValueError with a message fit for the operator."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ValueError("must start with redis://, rediss://, redis+sentinel:// or redis+cluster://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    if not at:
        hostlist, userinfo = netloc, ""
    user, _, password = userinfo.partition(":")
    hosts: list[tuple[str, int]] = []
    for item in filter(None, hostlist.split(",")):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        host = host.strip("[]")
        default = 26379 if scheme in SENTINEL_SCHEMES else 6379
        try:
            number = int(port) if port else default
        except ValueError:
            raise ValueError(f"has an invalid port: {port!r}") from None
        if not host or not 0 < number < 65536:
            raise ValueError(f"has an invalid host or port: {item!r}")
        hosts.append((host, number))
    if not hosts:
        raise ValueError("names no host")
    parts = [unquote(p) for p in path.split("/") if p]
    service: str | None = None
    if scheme in SENTINEL_SCHEMES:
        if not parts:
            raise ValueError("needs the master name: redis+sentinel://host:26379/mymaster")
        service, parts = parts[0], parts[1:]
    db = 0
    if parts:
        if not parts[0].isdigit():
            raise ValueError(f"has an invalid database number: {parts[0]!r}")
        db = int(parts[0])
    options: dict[str, Any] = dict(parse_qsl(query))
    for name in _BOOL_OPTIONS:
        if name in options:
            options[name] = options[name].lower() in ("1", "true", "yes")
    return RedisTarget(
        scheme=scheme,
        hosts=hosts,
        password=unquote(password) or None,
        username=unquote(user) or None,
        service=service,
        db=db,
        options=options,
    )


def connect(url: str, timeout_s: float, **extra: Any) -> Any:
    """A client for any REDIS_URL form; nothing is contacted until the first command."""
    no_retry: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": max(timeout_s, CONNECT_TIMEOUT_FLOOR_S),
        "retry": Retry(NoBackoff(), 0),
        **extra,
    }
    scheme = url.partition("://")[0].lower()
    if scheme.startswith("rediss"):
        # A TLS connect costs a handshake plus loading the CA file (~50 ms measured here, the
        # whole of the usual timeout); it is paid once per pooled connection, and the breaker
        # shields requests from a Redis that stays slow to connect.
        no_retry["socket_connect_timeout"] = max(timeout_s, TLS_CONNECT_TIMEOUT_S)
    if scheme in SENTINEL_SCHEMES:
        return _sentinel(parse_url(url), no_retry)
    if scheme in CLUSTER_SCHEMES:
        return _cluster(parse_url(url), no_retry)
    return aioredis.from_url(url, retry_on_timeout=False, **no_retry)


class _SentinelMaster(aioredis.Redis):
    """The master's client; closing it closes the Sentinel connections too."""

    sentinel: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel is not None:
            for client in self.sentinel.sentinels:
                await client.aclose()


def _sentinel(target: RedisTarget, kwargs: dict[str, Any]) -> aioredis.Redis:
    options = dict(target.options)
    sentinel_kwargs = {
        "socket_timeout": kwargs["socket_timeout"],
        "socket_connect_timeout": kwargs["socket_connect_timeout"],
        "retry": Retry(NoBackoff(), 0),
    }
    if "sentinel_password" in options:
        sentinel_kwargs["password"] = options.pop("sentinel_password")
    data_kwargs = {**kwargs, **options, "db": target.db}
    if target.password:
        data_kwargs["password"] = target.password
    if target.username:
        data_kwargs["username"] = target.username
    if target.tls:
        data_kwargs["ssl"] = True
    sentinel = Sentinel(target.hosts, sentinel_kwargs=sentinel_kwargs)
    assert target.service is not None
    client = sentinel.master_for(target.service, redis_class=_SentinelMaster, **data_kwargs)
    client.sentinel = sentinel
    return client


class _Cluster(RedisCluster):
    """A cluster client whose pub/sub goes through one plain connection to a seed node.

    Classic PUBLISH is relayed to every node by the cluster bus, so one node serves the event
    bus for the whole cluster; redis-py's ClusterPubSub instead needs the slot map loaded
    before it can pick a node, which a fresh client has not done yet. A different seed is
    tried at each reconnect, so one node down does not silence the bus for long.
    """

    seeds: list[tuple[str, int]]
    node_kwargs: dict[str, Any]
    _plain: list[aioredis.Redis]

    def pubsub(self, **kwargs: Any) -> Any:  # type: ignore[override]
        host, port = random.choice(self.seeds)
        client = aioredis.Redis(host=host, port=port, **self.node_kwargs)
        self._plain.append(client)
        return client.pubsub(**kwargs)

    async def aclose(self, *args: Any, **kwargs: Any) -> None:
        for client in self._plain:
            await client.aclose()
        self._plain.clear()
        await super().aclose(*args, **kwargs)


def _cluster(target: RedisTarget, kwargs: dict[str, Any]) -> RedisCluster:
    options = dict(target.options)
    node_kwargs = {**kwargs, **options, "password": target.password,
                   "username": target.username, "ssl": target.tls}
    client = _Cluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
        password=target.password,
        username=target.username,
        ssl=target.tls,
        # No retries (kwargs' Retry of 0): a node down is the breaker's business, not a loop's.
        **kwargs,
        **options,
    )
    client.seeds = list(target.hosts)
    client.node_kwargs = node_kwargs
    client._plain = []
    return client


class RedisStore:
    name = "redis"

    def __init__(self, url: str, *, timeout_ms: int = 50) -> None:
        self.url = url
        self.client = connect(url, timeout_ms / 1000)
        # Kept by whoever watches this store's health (the validation cache); read by every
        # other user of the store (revocations, login limits) so none of them waits on a
        # Redis already known to be failing.
        self.breaker = Breaker()

    async def get(self, key: str) -> str | None:
        try:
            return await self.client.get(key)
        except FAILURES as exc:
            raise StoreError(describe(exc)) from exc

    async def set(self, key: str, value: str, ttl: float) -> None:
        try:
            await self.client.set(key, value, px=max(1, int(ttl * 1000)))
        except FAILURES as exc:
            raise StoreError(describe(exc)) from exc

    async def delete(self, key: str) -> None:
        try:
            await self.client.delete(key)
        except FAILURES as exc:
            raise StoreError(describe(exc)) from exc

    async def set_max(self, key: str, value: int) -> None:
        """Raise a counter to `value` if it is lower (never lowers it), atomically."""
        try:
            await self.client.eval(_SET_MAX, 1, key, value)
        except FAILURES as exc:
            raise StoreError(describe(exc)) from exc

    async def count(self, prefix: str) -> int:
        try:
            n = 0
            async for _ in self.client.scan_iter(match=f"{_glob_escape(prefix)}*", count=1000):
                n += 1
            return n
        except FAILURES as exc:
            raise StoreError(describe(exc)) from exc

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except FAILURES as exc:
            raise StoreError(describe(exc)) from exc

    async def close(self) -> None:
        await self.client.aclose()


_SET_MAX = (
    "local c = tonumber(redis.call('GET', KEYS[1]) or '-1') "
    "if tonumber(ARGV[1]) > c then redis.call('SET', KEYS[1], ARGV[1]) end"
)


def _glob_escape(prefix: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)


def describe(exc: BaseException) -> str:
    """One operator-readable line for a Redis failure (auth, TLS and refusals say so)."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, AuthenticationError) or any(
        word in lowered for word in ("auth", "noperm", "wrongpass", "password")
    ):
        return f"authentication failed: {text}"
    if "certificate" in lowered or "ssl" in lowered or "tls" in lowered:
        return f"TLS failed: {text}"
    if "connection reset by peer" in lowered or "closed by server" in lowered:
        # What a TLS-only port answers to a plain-text client.
        return f"{text} (if this Redis requires TLS, use rediss://)"
    return text
