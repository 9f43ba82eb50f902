"""Echo server on Python `websockets` (asyncio API) for wsgate's client-role interop
tests (crates/wsgate/tests/it/interop_servers.rs, docs/interop.md).

Listens on 127.0.0.1:0 and reports on stdout, one JSON object per line:
  {"event":"ready","port":P}                          once listening
  {"event":"open","conn":N,"path":..,"subprotocol":..}  per accepted connection
  {"event":"message","conn":N,"type":"text"|"binary","size":N,"text"|"hex":..}
                                                      per message (payload when <= 1 KiB)
  {"event":"close","conn":N,"code":C,"reason":R}      the close frame received
  {"event":"end","conn":N}                            connection finished
Echoes text as text and binary as binary; the library answers a close frame with
the same code and reason (RFC 6455 7.1.5), which is what the tests check.
"""

import asyncio
import itertools
import json
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

KNOWN = ("wsgate.v1", "wsgate.v2")
SHOWN = 1024
conns = itertools.count(1)


def report(**fields):
    print(json.dumps(fields), flush=True)


def select_subprotocol(_connection, offered):
    # The library's default refuses (400) a client that offers none or none it
    # knows; a typical server goes on without a subprotocol instead.
    return next((p for p in offered if p in KNOWN), None)


def describe(msg):
    if isinstance(msg, str):
        raw = msg.encode()
        extra = {"text": msg} if len(raw) <= SHOWN else {}
        return dict(type="text", size=len(raw), **extra)
    extra = {"hex": msg.hex()} if len(msg) <= SHOWN else {}
    return dict(type="binary", size=len(msg), **extra)


async def handler(ws):
    conn = next(conns)
    report(event="open", conn=conn, path=ws.request.path, subprotocol=ws.subprotocol)
    try:
        async for msg in ws:
            report(event="message", conn=conn, **describe(msg))
            await ws.send(msg)
    except ConnectionClosed:
        # Iteration ends quietly only on 1000/1001; any other code (the tests close
        # with 4001) raises. Either way the close is reported below.
        pass
    finally:
        rcvd = ws.protocol.close_rcvd
        if rcvd is not None:
            report(event="close", conn=conn, code=rcvd.code, reason=rcvd.reason)
        report(event="end", conn=conn)


async def main():
    async with serve(
        handler,
        "127.0.0.1",
        0,
        select_subprotocol=select_subprotocol,
        max_size=8 << 20,
        # Keepalive pings would show up in wsgate's message log; the tests count it.
        ping_interval=None,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        report(event="ready", port=port)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
