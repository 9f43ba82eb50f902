"""The interop scenario (README.md) with the Python `websockets` asyncio client."""

import asyncio
import json
import sys

from websockets.asyncio.client import connect

TEXT = "héllo ✓"
STEP = 15  # seconds one step may take
TOTAL = 45  # seconds the whole run may take (the Rust test allows a little more)


def pattern(n):
    return bytes(((7 * i + 13 * (i >> 8) + 17 * (i >> 16)) & 0xFF) for i in range(n))


def describe(msg):
    if isinstance(msg, str):
        return {"kind": "text", "value": msg}
    return {"kind": "binary", "hex": msg.hex()}


async def echo(ws, payload):
    await asyncio.wait_for(ws.send(payload), STEP)
    return await asyncio.wait_for(ws.recv(), STEP)


async def run(mode, url, name, protocol):
    report = {"client": name, "offered": protocol or ""}
    # max_size=None: the 1 MiB echo is over websockets' 1 MiB default limit.
    async with connect(
        url,
        subprotocols=[protocol] if protocol else None,
        max_size=None,
        open_timeout=STEP,
        close_timeout=STEP,
    ) as ws:
        report["subprotocol"] = ws.subprotocol or ""
        if mode in ("live", "master"):
            report["first"] = describe(await asyncio.wait_for(ws.recv(), STEP))
            # master: the first `message` event after the status (others skipped).
            while mode == "master" and "event" not in report:
                e = await asyncio.wait_for(ws.recv(), STEP)
                if isinstance(e, str) and json.loads(e).get("type") == "message":
                    report["event"] = describe(e)
        else:
            report["text"] = describe(await echo(ws, TEXT))
            report["binary"] = describe(await echo(ws, bytes(range(256))))
            big = pattern(1 << 20)
            got = await echo(ws, big)
            kind = "text" if isinstance(got, str) else "binary"
            report["big"] = {"kind": kind, "len": len(got), "intact": got == big}
        await ws.close(4001, f"bye {name}")
        # After our close, close_code/close_reason are those of the frame the server
        # answered with (1006 if none came).
        report["close"] = {"code": ws.close_code, "reason": ws.close_reason}
    print(json.dumps(report, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    mode, url, name = sys.argv[1:4]
    protocol = sys.argv[4] if len(sys.argv) > 4 else None
    asyncio.run(asyncio.wait_for(run(mode, url, name, protocol), TOTAL))
