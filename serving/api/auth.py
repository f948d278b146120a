"""Optional API keys: `Authorization: Bearer KEY` or `X-API-Key: KEY`, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import Request

from serving.api.deps import SettingsDep
from serving.errors import ClientError


class Unauthorized(ClientError):
    status, code = 401, "unauthorized"


def presented_key(request: Request) -> str | None:
    if key := request.headers.get("x-api-key"):
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_is_valid(presented: str, keys: list[str]) -> bool:
    # Compare against every key, without stopping early, so timing tells nothing.
    matches = [hmac.compare_digest(presented.encode(), key.encode()) for key in keys]
    return any(matches)


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """FastAPI dependency; a no-op when no keys are configured. Async: a plain def would cost
    every request a hop to the thread pool."""
    keys: list[str] = settings.api_keys
    if not keys:
        return
    key = presented_key(request)
    if key is None:
        raise Unauthorized("this server requires an API key: send 'Authorization: Bearer KEY' "
                           "or 'X-API-Key: KEY'")
    if not key_is_valid(key, keys):
        raise Unauthorized("the API key is not valid")
