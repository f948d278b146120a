"""No endpoint speaks WebSocket. `weedscan serve`'s protocol answers an Upgrade request as the
plain HTTP request it also is (serving/api/protocol.py); a server that hands the app a WebSocket
handshake instead (plain `uvicorn --factory serving.api.app:create_app_from_env`) would answer it
with a bare 403 of its own. This middleware answers such a handshake as that same plain GET,
through the ASGI WebSocket Denial Response extension: the app's own response, in the JSON error
shape with the security headers for a refusal, whichever server runs the app."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DENIAL_EXTENSION = "websocket.http.response"


class WebSocketAsHttp:
    """Outermost: every other layer of the app sees the handshake as a GET request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        await receive()  # websocket.connect
        if DENIAL_EXTENSION not in (scope.get("extensions") or {}):
            await send({"type": "websocket.close", "code": 1008})  # the server's bare 403
            return
        http_scope = {**scope, "type": "http", "method": "GET",
                      "scheme": "https" if scope.get("scheme") == "wss" else "http"}
        http_scope.pop("subprotocols", None)

        async def no_body() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def as_denial(message: Message) -> None:
            if message["type"] == "http.response.start":
                await send({"type": "websocket.http.response.start", "status": message["status"],
                            "headers": message.get("headers", [])})
            elif message["type"] == "http.response.body":
                await send({"type": "websocket.http.response.body",
                            "body": message.get("body", b""),
                            "more_body": message.get("more_body", False)})

        await self.app(http_scope, no_body, as_denial)
