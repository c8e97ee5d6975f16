"""REDIS_URL forms beyond plain redis://: TLS with a password (certificates made here with
openssl), Sentinel (a master plus a redis-sentinel), and Redis Cluster (three nodes). Each test
starts its own servers; misconfigurations fail with a clear message and fall back to memory."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from regcopilot.cache.redis import parse_url
from regcopilot.config import ConfigError, load_settings
from tests.failover import ClusterSet
from tests.support import (
    COOKIE,
    REDIS_SERVER,
    RedisServer,
    eventually,
    free_port,
    port_open,
    validation_key,
    wait_until,
)

BEARER = {"Authorization": "Bearer monitor-token"}
DOWN = ("redis-disconnected", "redis-error")
PASSWORD = "s3cret-redis-pass"

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is needed")


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, crt = folder / f"{name}.key", folder / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(crt), "-days", "1", "-subj", f"/CN={name}"],
                   check=True, capture_output=True)
    return key, crt


def make_server_cert(folder: Path, ca_key: Path, ca_crt: Path) -> tuple[Path, Path]:
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey",
                    str(ca_key), "-CAcreateserial", "-out", str(crt), "-days", "1",
                    "-extfile", str(ext)], check=True, capture_output=True)
    return key, crt


async def as_user(app, email: str) -> int:
    app.client.cookies.clear()
    r = await app.login(email)
    assert r.status_code == 200, r.text
    cookie = app.client.cookies.get(COOKIE)
    app.client.cookies.clear()
    r = await app.client.get("/api/me", headers={"cookie": f"{COOKIE}={cookie}"})
    return r.status_code


async def backend(app) -> str:
    r = await app.client.get("/api/observability", headers=BEARER)
    assert r.status_code == 200, r.text
    return r.json()["validationCache"]["backend"]


@pytest.fixture
def tls_redis(tmp_path):
    ca_key, ca_crt = make_ca(tmp_path, "test-ca")
    _, other_ca = make_ca(tmp_path, "other-ca")
    key, crt = make_server_cert(tmp_path, ca_key, ca_crt)
    port = free_port()
    server = RedisServer("--port", "0", "--tls-port", str(port), "--tls-cert-file", str(crt),
                         "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca_crt),
                         "--tls-auth-clients", "no", port=port, password=PASSWORD)
    server.start()
    yield server, ca_crt, other_ca
    server.stop()


async def test_tls_redis_with_password(instance, tls_redis, redis_prefix):
    server, ca, _ = tls_redis
    url = f"rediss://:{PASSWORD}@127.0.0.1:{server.port}/0?ssl_ca_certs={ca}"
    async with instance("sqlite", url) as app:
        assert await backend(app) == "redis"
        user_id = await app.add_user("alice@example.com")
        assert await as_user(app, "alice@example.com") == 200
        await eventually(lambda: app.services.bus is not None and app.services.bus.connected,
                         timeout=5)
    client = redis.Redis(host="127.0.0.1", port=server.port, password=PASSWORD, ssl=True,
                         ssl_ca_certs=str(ca), decode_responses=True)
    try:
        assert client.get(validation_key(redis_prefix, user_id)) is not None
    finally:
        client.close()


@pytest.mark.parametrize(("case", "expected"), [
    ("wrong CA", "TLS failed"),
    ("wrong password", "authentication failed"),
    ("plain redis:// to the TLS port", "rediss://"),
])
async def test_tls_misconfigurations_fail_clearly_and_fall_back(instance, tls_redis, caplog,
                                                                case, expected):
    caplog.set_level(logging.INFO, logger="regcopilot")
    server, ca, other_ca = tls_redis
    url = {
        "wrong CA": f"rediss://:{PASSWORD}@127.0.0.1:{server.port}/0?ssl_ca_certs={other_ca}",
        "wrong password": f"rediss://:wrong@127.0.0.1:{server.port}/0?ssl_ca_certs={ca}",
        "plain redis:// to the TLS port": f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0",
    }[case]
    async with instance("sqlite", url) as app:
        assert await backend(app) in DOWN
        ready = (await app.client.get("/api/ready")).json()
        error = ready["cache"]["lastError"]
        assert error and expected in error, error
        assert "Redis cache unavailable" in caplog.text and expected in caplog.text
        await app.add_user("alice@example.com")
        assert await as_user(app, "alice@example.com") == 200  # the memory tier serves
        assert PASSWORD not in caplog.text


@pytest.fixture
def sentinel_setup(tmp_path):
    master = RedisServer().start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
                    "sentinel down-after-milliseconds mymaster 5000\n")
    proc = subprocess.Popen([REDIS_SERVER, str(conf), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port), timeout=10)
        yield master, port
    finally:
        proc.kill()
        proc.wait(5)
        master.stop()


async def test_sentinel_url(instance, sentinel_setup, redis_prefix):
    master, sentinel_port = sentinel_setup
    async with instance("sqlite", f"redis+sentinel://127.0.0.1:{sentinel_port}/mymaster") as app:
        assert await backend(app) == "redis"
        user_id = await app.add_user("alice@example.com")
        assert await as_user(app, "alice@example.com") == 200
        await eventually(lambda: app.services.bus is not None and app.services.bus.connected,
                         timeout=5)
    client = redis.Redis.from_url(master.url, decode_responses=True)
    try:
        assert client.get(validation_key(redis_prefix, user_id)) is not None
    finally:
        client.close()


async def test_sentinel_naming_an_unknown_master_falls_back(instance, sentinel_setup):
    _, sentinel_port = sentinel_setup
    async with instance("sqlite", f"redis+sentinel://127.0.0.1:{sentinel_port}/nosuch") as app:
        assert await backend(app) in DOWN
        ready = (await app.client.get("/api/ready")).json()
        assert "nosuch" in ready["cache"]["lastError"]
        await app.add_user("alice@example.com")
        assert await as_user(app, "alice@example.com") == 200


@pytest.fixture
def redis_cluster():
    group = ClusterSet(node_timeout_ms=2000, replicas=0).start()
    yield group.nodes
    group.stop()


async def test_cluster_url(instance, redis_cluster, redis_prefix):
    seeds = ",".join(f"127.0.0.1:{n.port}" for n in redis_cluster[:2])
    async with instance("sqlite", f"redis+cluster://{seeds}") as app:
        assert await backend(app) == "redis"
        ids = [await app.add_user(f"user{i}@example.com") for i in range(6)]
        for i in range(6):
            assert await as_user(app, f"user{i}@example.com") == 200
        # Logout and revocation on the cluster too.
        app.client.cookies.clear()
        await app.login("user0@example.com")
        token = app.client.cookies.get(COOKIE)
        assert (await app.client.post("/api/auth/logout")).status_code == 200
        app.client.cookies.clear()
        r = await app.client.get("/api/me", headers={"cookie": f"{COOKIE}={token}"})
        assert r.status_code == 401
        body = (await app.client.get("/api/observability", headers=BEARER)).json()
        assert body["validationCache"]["backend"] == "redis"
        # Cluster-wide totals on Redis Cluster too: the metrics keys share one hash tag.
        assert body["authentication"]["scope"] == "cluster"
        await eventually(lambda: app.services.bus is not None and app.services.bus.connected,
                         timeout=5)
        admin = await app.client.post("/api/admin/invalidate-user", json={"userId": ids[1]})
        assert admin.status_code in (401, 403)  # not signed in as admin: refused, not a 500
    # The entries are spread over the cluster's nodes.
    found = 0
    for n in redis_cluster:
        with redis.Redis(port=n.port, decode_responses=True) as client:
            found += sum(1 for _ in client.scan_iter(match=validation_key(redis_prefix, "*")))
    assert found == 6


@pytest.mark.parametrize(("url", "problem"), [
    ("redis+sentinel://127.0.0.1:26379", "master name"),
    ("redis+sentinel://127.0.0.1:x/mymaster", "host:port"),
    ("redis+cluster://a:1,:2", "host:port"),
    ("memcached://127.0.0.1:11211", "must be redis://"),
    ("redis://127.0.0.1:port/0", "port"),
])
def test_bad_redis_urls_stop_startup_with_one_line(url, problem, tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_settings(REDIS_URL=url, NEXTAUTH_SECRET="s" * 40, DATA_DIR=str(tmp_path))
    message = str(caught.value)
    assert message.startswith("REDIS_URL") and problem in message and "\n" not in message


def test_url_forms_parse():
    t = parse_url("rediss+sentinel://:p%40ss@h1:26379,h2:26380/mymaster/2"
                  "?sentinel_password=sp&ssl_ca_certs=/ca.pem")
    assert (t.hosts, t.password, t.service, t.db, t.tls) == (
        [("h1", 26379), ("h2", 26380)], "p@ss", "mymaster", 2, True)
    assert t.options == {"sentinel_password": "sp", "ssl_ca_certs": "/ca.pem"}
    t = parse_url("redis+cluster://10.0.0.1,10.0.0.2:7001")
    assert t.hosts == [("10.0.0.1", 6379), ("10.0.0.2", 7001)] and not t.tls
