"""The Host the allow-list checks is the one the request means: a request with two Host headers
is refused (400), and an absolute-form target (`GET http://name/path`) is checked by its own host,
not by the Host header beside it (RFC 9112, 3.2). Over raw loopback sockets to a real server."""

from __future__ import annotations

import json

from tests.robustness.rawhttp import open_socket, read_until_closed, status_of


def ask(live, head: str) -> tuple[int, dict]:  # noqa: ANN001
    sock = open_socket(live.port, timeout=30)
    try:
        sock.sendall(head.encode("latin-1") + b"Connection: close\r\n\r\n")
        answer = read_until_closed(sock)
    finally:
        sock.close()
    return status_of(answer), json.loads(answer.partition(b"\r\n\r\n")[2] or b"{}")


def test_two_host_headers_are_refused(live) -> None:  # noqa: ANN001
    for hosts in (("127.0.0.1", "evil.example"), ("evil.example", "127.0.0.1"), ("127.0.0.1",) * 2):
        lines = "".join(f"Host: {h}\r\n" for h in hosts)
        status, body = ask(live, f"GET /v1/models HTTP/1.1\r\n{lines}")
        assert status == 400 and body["error"]["code"] == "bad_request", (hosts, status, body)


def test_an_absolute_target_is_checked_by_its_own_host(live) -> None:  # noqa: ANN001
    status, body = ask(live, "GET http://evil.example/v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert status == 421 and body["error"]["code"] == "misdirected_request", (status, body)
    status, body = ask(live, f"GET http://127.0.0.1:{live.port}/v1/models HTTP/1.1\r\n"
                             "Host: evil.example\r\n")
    assert status == 200 and "models" in body, (status, body)
    status, body = ask(live, f"GET http://[::1]:{live.port}/v1/models HTTP/1.1\r\nHost: x\r\n")
    assert status == 200, (status, body)
