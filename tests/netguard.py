"""A socket guard: any outbound connection or DNS lookup is recorded and refused."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


class NetworkAttempt(OSError):
    pass


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")
    return isinstance(address, (str, bytes))  # AF_UNIX paths


@contextmanager
def no_network(allow_loopback: bool = False) -> Iterator[list[str]]:
    """Within the block, every non-loopback connect and every name lookup raises; the list
    returned collects what was attempted."""
    attempts: list[str] = []
    originals = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo,
                 socket.create_connection)

    def guarded_connect(self: socket.socket, address: object) -> None:
        if allow_loopback and _is_loopback(address):
            return originals[0](self, address)
        attempts.append(f"connect {address!r}")
        raise NetworkAttempt(f"network access blocked in tests: connect {address!r}")

    def guarded_connect_ex(self: socket.socket, address: object) -> int:
        if allow_loopback and _is_loopback(address):
            return originals[1](self, address)
        attempts.append(f"connect_ex {address!r}")
        raise NetworkAttempt(f"network access blocked in tests: connect_ex {address!r}")

    def guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        if allow_loopback and host in ("127.0.0.1", "localhost", "::1"):
            return originals[2](host, *args, **kwargs)
        attempts.append(f"getaddrinfo {host!r}")
        raise socket.gaierror(f"name lookup blocked in tests: {host!r}")

    def guarded_create_connection(address: tuple, *args: object, **kwargs: object) -> socket.socket:
        if allow_loopback and _is_loopback(address):
            return originals[3](address, *args, **kwargs)
        attempts.append(f"create_connection {address!r}")
        raise NetworkAttempt(f"network access blocked in tests: {address!r}")

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_getaddrinfo  # type: ignore[assignment]
    socket.create_connection = guarded_create_connection  # type: ignore[assignment]
    try:
        yield attempts
    finally:
        (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo,
         socket.create_connection) = originals
