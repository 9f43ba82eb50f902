"""Drives a WebSocket endpoint with the Python `websockets` library (a third-party
client) and prints one JSON line with what happened. Used by the integration tests
to check that wsgate's proxy is transparent to a client it did not write."""

import asyncio
import json
import sys

import websockets


async def main(url: str) -> None:
    result = {}
    async with websockets.connect(url, subprotocols=["v1", "v2"], max_size=None) as ws:
        result["subprotocol"] = ws.subprotocol
        await ws.send("héllo")
        result["text"] = await ws.recv()
        payload = bytes(range(256)) * 300
        await ws.send(payload)
        echoed = await ws.recv()
        result["binary_ok"] = echoed == payload
        pong = await ws.ping(b"py-ping")
        await asyncio.wait_for(pong, 10)
        result["pong"] = True
        await ws.close(code=4001, reason="bye")
        result["close_code"] = ws.close_code
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
