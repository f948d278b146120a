"""The HTTP floor: an ASGI app that reads the body and answers a few bytes, nothing else.

    python benchmarks/peers/empty_app.py PORT

Served by uvicorn's httptools protocol as `weedscan serve` is; for benchmarks/bench_serving.py
(the round trip of the same body on loopback, beside weedscan's answer). Loopback only.
"""

from __future__ import annotations

import sys

import uvicorn

ANSWER = b'{"ok":true}'


async def app(scope: dict, receive, send) -> None:  # noqa: ANN001 - ASGI callables
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:  # the whole body, as weedscan reads it
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]})
    await send({"type": "http.response.body", "body": ANSWER})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", log_level="warning",
                access_log=False, server_header=False)
