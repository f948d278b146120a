"""Runs `weedscan serve` (start, ready, requests) or `weedscan detect IMAGE` for the no-network
tests, possibly inside a network namespace of its own (`unshare -n`) and under strace.

    python -m tests.robustness.offline_run serve MODEL IMAGE [--linger S]
    python -m tests.robustness.offline_run detect MODEL IMAGE

Prints one JSON object: what the requests got. Bounded in time; stops its server itself.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx


def loopback_up() -> None:
    """A fresh network namespace has `lo` down; bring it up (no `ip` binary needed)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, siocgifflags, request))[1]
        if not flags & iff_up:
            fcntl.ioctl(s, siocsifflags, struct.pack("16sh", b"lo", flags | iff_up))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(model: Path, image: Path, linger: float) -> dict:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "training.cli", "serve", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    statuses: dict[str, int] = {}
    engine: str | None = None
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not become ready")
                time.sleep(0.2)
            data = image.read_bytes()
            statuses["readyz"] = 200
            answer = http.post("/v1/detect", content=data, headers={"Content-Type": "image/jpeg"})
            statuses["detect"] = answer.status_code
            engine = answer.json()["model"]["engine"] if answer.status_code == 200 else None
            statuses["batch"] = http.post("/v1/detect/batch", files={
                "images": ("a.jpg", data, "image/jpeg")}).status_code
            statuses["annotate"] = http.post("/v1/annotate", content=data,
                                             headers={"Content-Type": "image/jpeg"}).status_code
            for path in ("/", "/docs", "/v1/models", "/metrics"):
                statuses[path] = http.get(path).status_code
            end = time.monotonic() + linger  # native code may phone home on a timer: stay a while
            while time.monotonic() < end:
                time.sleep(min(2.0, max(0.0, end - time.monotonic())))
                statuses["late-detect"] = http.post("/v1/detect", content=data,
                                                    headers={"Content-Type": "image/jpeg"}).status_code
    finally:
        server.terminate()
        try:
            log, _ = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            log, _ = server.communicate()
    return {"statuses": statuses, "engine": engine, "log_tail": (log or "")[-2000:]}


def detect(model: Path, image: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "training.cli", "detect", str(image), "--model", str(model)],
                          capture_output=True, text=True, timeout=120)
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr[-2000:]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve", "detect"])
    parser.add_argument("model", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--linger", type=float, default=0.0)
    parser.add_argument("--netns", action="store_true", help="bring up lo (in a fresh namespace)")
    args = parser.parse_args()
    if args.netns:
        loopback_up()
    result = serve(args.model, args.image, args.linger) if args.command == "serve" else detect(args.model, args.image)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
