"""The tests' one socket guard: every non-loopback connection attempt or name lookup is recorded
and refused (every one at all with `allow_loopback=False`).

In process it is installed with `guarded()`; for subprocesses, `write_sitecustomize(folder)` writes
this very module as `sitecustomize.py` into a folder to put on PYTHONPATH: Python imports it at
start-up, and it appends what it saw, one JSON object a line, to $WEEDSCAN_NETGUARD_LOG.

It sees what goes through Python's socket module. Code that opens sockets natively (a C library
with its own HTTP client) passes it by; tests/robustness/test_no_network.py also traces syscalls.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_ENV = "WEEDSCAN_NETGUARD_LOG"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class NetworkAttempt(OSError):
    """Raised instead of letting a connection or lookup leave the machine."""


def is_loopback_host(host: object) -> bool:
    if host is None:  # getaddrinfo(None, port): a passive (bind) lookup
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    name = str(host).strip("[]").split("%")[0]
    if name.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_address(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    return isinstance(address, tuple) and bool(address) and is_loopback_host(address[0])


class Guard:
    def __init__(self, record: Callable[[str, str], None], allow_loopback: bool = True) -> None:
        self.record = record
        self.allow_loopback = allow_loopback
        self._originals: dict[str, object] = {}

    def _allowed(self, sock: socket.socket | None, address: object) -> bool:
        if not self.allow_loopback:
            return False
        return (sock is not None and sock.family == getattr(socket, "AF_UNIX", None)) \
            or is_loopback_address(address)

    def _refuse(self, kind: str, target: object) -> NetworkAttempt:
        self.record(kind, repr(target))
        return NetworkAttempt(f"outbound network access refused by the test guard: {kind} {target!r}")

    def install(self) -> None:
        cls = socket.socket
        self._originals = {"connect": cls.connect, "connect_ex": cls.connect_ex, "sendto": cls.sendto,
                           "getaddrinfo": socket.getaddrinfo,
                           "create_connection": socket.create_connection}
        o, guard = self._originals, self

        def connect(sock: socket.socket, address: object) -> None:
            if guard._allowed(sock, address):
                return o["connect"](sock, address)  # type: ignore[operator]
            raise guard._refuse("connect", address)

        def connect_ex(sock: socket.socket, address: object) -> int:
            if guard._allowed(sock, address):
                return o["connect_ex"](sock, address)  # type: ignore[operator]
            raise guard._refuse("connect_ex", address)

        def sendto(sock: socket.socket, data: bytes, *args: object) -> int:
            address = args[-1]
            if guard._allowed(sock, address):
                return o["sendto"](sock, data, *args)  # type: ignore[operator]
            raise guard._refuse("sendto", address)

        def getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
            if guard.allow_loopback and is_loopback_host(host):
                return o["getaddrinfo"](host, *args, **kwargs)  # type: ignore[operator]
            raise guard._refuse("getaddrinfo", host)

        def create_connection(address: tuple, *args: object, **kwargs: object) -> socket.socket:
            if guard._allowed(None, address):
                return o["create_connection"](address, *args, **kwargs)  # type: ignore[operator]
            raise guard._refuse("create_connection", address)

        cls.connect, cls.connect_ex, cls.sendto = connect, connect_ex, sendto  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
        socket.create_connection = create_connection  # type: ignore[assignment]

    def uninstall(self) -> None:
        o = self._originals
        cls = socket.socket
        cls.connect, cls.connect_ex, cls.sendto = o["connect"], o["connect_ex"], o["sendto"]  # type: ignore[method-assign]
        socket.getaddrinfo = o["getaddrinfo"]  # type: ignore[assignment]
        socket.create_connection = o["create_connection"]  # type: ignore[assignment]


@contextmanager
def guarded(allow_loopback: bool = True) -> Iterator[list[str]]:
    """In process: within the block, outbound attempts (with `allow_loopback=False`, all
    attempts) raise; the list collects them."""
    attempts: list[str] = []
    guard = Guard(lambda kind, target: attempts.append(f"{kind} {target}"), allow_loopback)
    guard.install()
    try:
        yield attempts
    finally:
        guard.uninstall()


def install_from_env() -> None:
    """sitecustomize entry point: guard this process, log to $WEEDSCAN_NETGUARD_LOG."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return

    def write(event: str, kind: str = "", target: str = "") -> None:
        line = json.dumps({"pid": os.getpid(), "event": event, "kind": kind, "target": target,
                           "argv": sys.argv[:4]})
        with open(path, "a", encoding="utf-8") as log:  # noqa: PTH123 - no pathlib at interpreter start-up
            log.write(line + "\n")

    Guard(lambda kind, target: write("attempt", kind, target)).install()
    write("installed")


def write_sitecustomize(folder: Path) -> Path:
    """Write this module as `folder/sitecustomize.py`, which installs the guard at start-up."""
    source = Path(__file__).read_text(encoding="utf-8")
    target = folder / "sitecustomize.py"
    target.write_text(source + "\n\ninstall_from_env()\n", encoding="utf-8")
    return target


def read_log(path: Path) -> tuple[list[dict], list[dict]]:
    """(processes that installed the guard, attempts they made)."""
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []
    return ([e for e in events if e["event"] == "installed"], [e for e in events if e["event"] == "attempt"])
