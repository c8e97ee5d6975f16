"""Bytecodes executed per request on the wire, per Python function (or per line): a count that
no neighbour on a shared machine can move, where CPU time there moves by ±20 % between two runs
of the same code. It is bench/wire_cost.py's request (uvicorn's protocol fed request bytes, no
sockets), run under `sys.settrace` with opcode events for a few hundred warm requests.

    .venv/bin/python -m bench.opcodes [--case me] [--lines] [--top 40]

What it does not see: C code (uvicorn's parser, dict lookups, orjson) and memory. A bytecode
saved is worth ~10-30 ns in a busy server; read the total against (R)'s (`--case raw`).
"""

from __future__ import annotations

import argparse
import asyncio
import linecache
import sys
from collections import Counter
from types import FrameType
from typing import Any

import uvloop

from bench.asgi_cost import ours_signed_in
from bench.profile import short_path
from bench.wire_cost import connection, quiet_feed, request_bytes

PATHS = {"raw": "/api/health", "health": "/api/health", "me": "/api/me",
         "session": "/api/auth/session"}
WARM = 300


async def count(case: str, n: int, lines: bool) -> Counter[Any]:
    """Bytecodes per function ((file, name)) or per line ((file, line)), over n requests."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from bench.raw_app import app as raw
    from regcopilot.web.connections import GuardedHttpProtocol

    counts: Counter[Any] = Counter()

    def local(frame: FrameType, event: str, _arg: Any) -> Any:
        if event == "opcode":
            code = frame.f_code
            counts[(code.co_filename, frame.f_lineno if lines else code.co_name)] += 1
        return local

    def tracer(frame: FrameType, _event: str, _arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return local

    async with ours_signed_in() as (ours, cookie):
        app, protocol = (raw, HttpToolsProtocol) if case == "raw" else (ours,
                                                                        GuardedHttpProtocol)
        conn, transport = connection(app, protocol)
        loop = asyncio.get_running_loop()
        request = request_bytes(PATHS[case], cookie)

        async def one() -> None:
            conn.done = loop.create_future()
            conn.data_received(request)
            await conn.done

        for _ in range(WARM):
            await one()
        status = transport.written[-2].split(b" ", 2)[1]
        if status != b"200":
            raise SystemExit(f"{PATHS[case]} answered {status!r}")
        with quiet_feed():
            sys.settrace(tracer)
            try:
                for _ in range(n):
                    await one()
            finally:
                sys.settrace(None)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(PATHS), default="me")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--lines", action="store_true", help="per line, not per function")
    parser.add_argument("--top", type=int, default=40)
    a = parser.parse_args(argv)
    if a.requests < 1:
        parser.error("--requests must be at least 1")
    counts = uvloop.run(count(a.case, a.requests, a.lines))
    # The harness's own frames (this module's, the fake transport's) are not the server's.
    counts = Counter({k: v for k, v in counts.items()
                      if not k[0].endswith(("bench/opcodes.py", "bench/wire_cost.py"))})
    print(f"{a.case}: {sum(counts.values()) / a.requests:,.0f} bytecodes per request")
    for (filename, where), v in counts.most_common(a.top):
        label = f"{short_path(filename)}:{where}"
        if a.lines:
            label += "  " + linecache.getline(filename, where or 0).strip()[:90]
        print(f"{v / a.requests:8.1f}  {label}")


if __name__ == "__main__":
    main()
