"""The interop scenario (README.md) with Python `aiohttp`'s `ClientSession.ws_connect`."""

import asyncio
import json
import sys

import aiohttp

TEXT = "héllo ✓"
STEP = 15  # seconds one step may take
TOTAL = 45  # seconds the whole run may take (the Rust test allows a little more)


def pattern(n):
    return bytes(((7 * i + 13 * (i >> 8) + 17 * (i >> 16)) & 0xFF) for i in range(n))


def describe(msg):
    if msg.type == aiohttp.WSMsgType.TEXT:
        return {"kind": "text", "value": msg.data}
    if msg.type == aiohttp.WSMsgType.BINARY:
        return {"kind": "binary", "hex": msg.data.hex()}
    # CLOSE, ERROR, ...: say what came instead of a data message.
    return {"kind": msg.type.name.lower(), "value": repr(msg.data)}


async def receive(ws):
    return await asyncio.wait_for(ws.receive(), STEP)


async def run(mode, url, name, protocol):
    report = {"client": name, "offered": protocol or ""}
    timeout = aiohttp.ClientWSTimeout(ws_receive=STEP, ws_close=STEP)
    async with aiohttp.ClientSession() as session:
        # max_msg_size=0: no limit (the default 4 MiB would do, but the scenario should
        # not depend on it).
        async with session.ws_connect(
            url, protocols=(protocol,) if protocol else (), max_msg_size=0, timeout=timeout
        ) as ws:
            report["subprotocol"] = ws.protocol or ""
            if mode == "live":
                report["first"] = describe(await receive(ws))
            else:
                await ws.send_str(TEXT)
                report["text"] = describe(await receive(ws))
                await ws.send_bytes(bytes(range(256)))
                report["binary"] = describe(await receive(ws))
                big = pattern(1 << 20)
                await ws.send_bytes(big)
                got = await receive(ws)
                if got.type == aiohttp.WSMsgType.BINARY:
                    report["big"] = {"kind": "binary", "len": len(got.data), "intact": got.data == big}
                else:
                    report["big"] = describe(got)
            await asyncio.wait_for(ws.close(code=4001, message=f"bye {name}".encode()), STEP)
            # close() reads until the server's close frame and keeps its code; the
            # reason it carried is not exposed by aiohttp's API.
            report["close"] = {"code": ws.close_code, "reason": None}
    print(json.dumps(report, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    mode, url, name = sys.argv[1:4]
    protocol = sys.argv[4] if len(sys.argv) > 4 else None
    asyncio.run(asyncio.wait_for(run(mode, url, name, protocol), TOTAL))
