"""nginx of the run's own: a temporary prefix, `daemon off`, stopped by its PID."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.infra import SERVER_CORE, free_port, pinned, port_open, stop_process, wait_for

CONF = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream regcopilot {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://regcopilot;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, upstream_ports: list[int], core: str = SERVER_CORE) -> None:
        self.port = free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="regcopilot-bench-nginx-"))
        servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstream_ports)
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(CONF.format(prefix=self.prefix, servers=servers, port=self.port))
        self.core = core
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        argv = pinned(self.core, [exe, "-p", str(self.prefix), "-c", str(self.conf),
                                  "-e", str(self.prefix / "error.log")])
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: self._up(), 10, "nginx")
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise RuntimeError(f"nginx exited: {err}")
        return port_open(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        shutil.rmtree(self.prefix, ignore_errors=True)
