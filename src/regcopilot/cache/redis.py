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
import secrets
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from regcopilot.cache.breaker import Breaker
from regcopilot.cache.store import AmbiguousStoreError, StoreError

T = TypeVar("T")

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
    """The one thing that talks to Redis on the request path. Every command goes through
    `_run`: a client error becomes a StoreError there, and the breaker hears of every failure
    and every answer, whoever asked (validation cache, login limits, revocations, locks)."""

    name = "redis"

    def __init__(self, url: str, *, timeout_ms: int = 50, breaker: Breaker | None = None) -> None:
        self.url = url
        self._client = connect(url, timeout_ms / 1000)
        # Read by every user of the store so none of them waits on a Redis already known to
        # be failing; only the validation cache's probe closes it again.
        self.breaker = breaker or Breaker()

    async def _run(self, command: Awaitable[T], *, feed: bool = True) -> T:
        try:
            result = await command
        except FAILURES as exc:
            error = StoreError(describe(exc))
            error.__cause__ = exc
            if feed:
                self.breaker.failure(error, str(error))
            raise error from exc
        if feed:
            self.breaker.answered()
        return result

    async def get(self, key: str) -> str | None:
        return await self._run(self._client.get(key))

    async def set(self, key: str, value: str, ttl: float) -> None:
        await self._run(self._client.set(key, value, px=_ms(ttl)))

    async def delete(self, key: str) -> None:
        await self._run(self._client.delete(key))

    async def set_max(self, key: str, value: int) -> None:
        """Raise a counter to `value` if it is lower (never lowers it), atomically."""
        await self._run(self._client.eval(_SET_MAX, 1, key, value))

    async def exists(self, key: str) -> bool:
        return bool(await self._run(self._client.exists(key)))

    async def count(self, prefix: str) -> int:
        return len(await self._run(self._keys(prefix)))

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix` (a SCAN, never KEYS: Redis keeps serving)."""

        async def delete_all() -> int:
            keys = await self._keys(prefix)
            for key in keys:
                await self._client.delete(key)
            return len(keys)

        return await self._run(delete_all())

    async def scan_ttl(self, prefix: str) -> list[tuple[str, float]]:
        """The keys under `prefix` (prefix removed) with their seconds left, expired ones out."""

        async def scan() -> list[tuple[str, float]]:
            found = []
            for key in await self._keys(prefix):
                ms = await self._client.pttl(key)
                if ms > 0:
                    found.append((key.removeprefix(prefix), ms / 1000))
            return found

        return await self._run(scan())

    async def _keys(self, prefix: str) -> list[str]:
        match = f"{_glob_escape(prefix)}*"
        return [key async for key in self._client.scan_iter(match=match, count=1000)]

    async def try_lock(self, key: str, ttl: float) -> str | None:
        """Take a lock that frees itself after `ttl`; the token to unlock it, or None when
        someone else holds it."""
        token = secrets.token_hex(8)
        taken = await self._run(self._client.set(key, token, px=_ms(ttl), nx=True))
        return token if taken else None

    async def unlock(self, key: str, token: str) -> None:
        """Release a lock only if it is still ours (it may have expired and been re-taken)."""
        await self._run(self._client.eval(_UNLOCK, 1, key, token))

    async def window_count(self, key: str) -> tuple[int, float | None]:
        """A windowed counter's value and the seconds left in its window (None: no window)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.get(key)
        pipe.ttl(key)
        raw, ttl = await self._run(pipe.execute())
        return int(raw or 0), (float(ttl) if ttl and ttl > 0 else None)

    async def window_bump(self, key: str, window: int) -> None:
        """Count one; the window starts at the first count and is not moved by later ones."""
        pipe = self._client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, window, nx=True)
        await self._run(pipe.execute())

    async def ping(self) -> None:
        # The probe decides what an answer means for the breaker (it closes it), not this.
        await self._run(self._client.ping(), feed=False)

    async def server_version(self) -> str | None:
        """The server's version (INFO server); None where INFO is renamed or forbidden by
        ACLs (PING is what counts)."""
        try:
            info = await self._run(self._client.info("server"), feed=False)
        except StoreError:
            return None
        version = info.get("redis_version") if isinstance(info, dict) else None
        return version if isinstance(version, str) else None

    async def unneeded_password(self) -> bool:
        """True when REDIS_URL gives a password this Redis does not have (anyone can connect).
        redis-py signs in with HELLO 3 AUTH, which a server without a password accepts
        whatever the password; a plain AUTH is refused there, and that refusal tells."""
        return await unneeded_password(self._client, self.url)

    async def close(self) -> None:
        await self._client.aclose()


@contextmanager
def translated() -> Iterator[None]:
    """For the connections kept outside RedisStore on purpose (the event bus's pub/sub, the
    metrics flush): a client error becomes StoreError, as in the store — AmbiguousStoreError
    for a timeout, after which the command may have been applied."""
    try:
        yield
    except FAILURES as exc:
        timed_out = isinstance(exc, RedisTimeoutError | TimeoutError)
        raise (AmbiguousStoreError if timed_out else StoreError)(describe(exc)) from exc


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


_SET_MAX = (
    "local c = tonumber(redis.call('GET', KEYS[1]) or '-1') "
    "if tonumber(ARGV[1]) > c then redis.call('SET', KEYS[1], ARGV[1]) end"
)
_UNLOCK = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0"
)


def _glob_escape(prefix: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)


NO_PASSWORD_CONFIGURED = "without any password configured"
UNNEEDED_PASSWORD = ("REDIS_URL gives a password, but this Redis has none configured and "
                     "accepts any client: set requirepass on the server, or drop the password "
                     "from REDIS_URL")


async def unneeded_password(client: Any, url: str) -> bool:
    """Ask with a plain AUTH (see RedisStore.unneeded_password); `doctor` asks the same way."""
    scheme = url.partition("://")[0].lower()
    if scheme not in ("redis", "rediss"):
        return False  # Sentinel and Cluster sign in per node: not asked here
    target = parse_url(url)
    if target.password is None or target.username not in (None, "default"):
        return False  # no password, or an ACL user's, which is meaningful
    try:
        await client.execute_command("AUTH", target.password)
    except FAILURES as exc:
        text = str(exc)
        return NO_PASSWORD_CONFIGURED in text or "no password is set" in text
    return False


def describe(exc: BaseException) -> str:
    """One operator-readable line for a Redis failure (auth, TLS and refusals say so): the
    app's log and `doctor` both print it."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, AuthenticationError) or any(
        word in lowered for word in ("auth", "noperm", "wrongpass", "password")
    ):
        return f"authentication failed: {_auth_hint(text) or text}"
    if "certificate" in lowered or "ssl" in lowered or "tls" in lowered:
        return f"TLS failed: {text}"
    if "connection reset by peer" in lowered or "closed by server" in lowered:
        # What a TLS-only port answers to a plain-text client.
        return f"{text} (if this Redis requires TLS, use rediss://)"
    return text


def _auth_hint(text: str) -> str | None:
    """Which side of the password is wrong, from the server's words."""
    lowered = text.lower()
    if ("noauth" in lowered or "authentication required" in lowered
            or "client already authenticated" in lowered):
        return ("the server requires a password and REDIS_URL has none "
                "(redis://:<password>@host:6379)")
    if "wrongpass" in lowered or "invalid password" in lowered or "invalid username" in lowered:
        return "wrong username or password in REDIS_URL"
    if "without any password configured" in lowered or "auth <password> called" in lowered:
        return "REDIS_URL gives a password the server does not have"
    if "noperm" in lowered:
        return f"the user lacks a permission ({text})"
    return None
