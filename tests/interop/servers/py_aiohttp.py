"""Echo server on Python `aiohttp` for wsgate's client-role interop tests
(crates/wsgate/tests/it/interop_servers.rs, docs/interop.md).

Same stdout protocol as py_websockets.py: JSON lines `ready` (with the port), then per
connection `open`, `message`, `close`, `end`. Echoes text as text and binary as
binary, answers a close frame with the same code and reason.
"""

import asyncio
import itertools
import json
import socket
import sys

from aiohttp import WSMsgType, web

KNOWN = ("wsgate.v1", "wsgate.v2")
SHOWN = 1024
conns = itertools.count(1)


def report(**fields):
    print(json.dumps(fields), flush=True)


async def handler(request):
    # aiohttp picks the first protocol the client offers that is in this list.
    # autoclose off: its own reply to a close frame always says 1000 with no reason.
    ws = web.WebSocketResponse(protocols=KNOWN, max_msg_size=8 << 20, autoclose=False)
    await ws.prepare(request)
    conn = next(conns)
    report(event="open", conn=conn, path=request.path_qs, subprotocol=ws.ws_protocol)
    # Not `async for`: it stops at a close frame without handing it over.
    while True:
        msg = await ws.receive()
        if msg.type == WSMsgType.TEXT:
            raw = msg.data.encode()
            extra = {"text": msg.data} if len(raw) <= SHOWN else {}
            report(event="message", conn=conn, type="text", size=len(raw), **extra)
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            extra = {"hex": msg.data.hex()} if len(msg.data) <= SHOWN else {}
            report(event="message", conn=conn, type="binary", size=len(msg.data), **extra)
            await ws.send_bytes(msg.data)
        elif msg.type == WSMsgType.CLOSE:
            # msg.data is the code (0 when the frame had none: reported as 1005, as the
            # other servers do), msg.extra the reason.
            # aiohttp always writes a code, so an empty close is answered with 1000.
            report(event="close", conn=conn, code=msg.data or 1005, reason=msg.extra or "")
            await ws.close(code=msg.data or 1000, message=(msg.extra or "").encode())
            break
        elif msg.type == WSMsgType.ERROR:
            report(event="error", conn=conn, message=str(ws.exception()))
            break
        elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
            break
    report(event="end", conn=conn)
    return ws


async def main():
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    # Bind the socket ourselves: port 0, and we can read which port we got.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    report(event="ready", port=sock.getsockname()[1])
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
