"""Load test of a real `weedscan serve` on loopback: capacity, overload behaviour, memory.

  1. start the server (subprocess, WEEDSCAN_THREADS set) and warm it up;
  2. capacity: requests/s of closed loops of 1, 2 and 4 clients (--peak-clients); the 1-client
     figure and the peak (the best of them: the server batches frames of concurrent clients)
     are both kept, and every goodput below is given as a ratio to each;
  3. open-loop arrivals (Poisson, fixed seed) at 1x, 2x and 4x the 1-client capacity for
     --duration s each; a client that gets 503 waits Retry-After seconds and tries again (up to
     --give-up s in all); p50/p99 latency (first send to final answer, waits included),
     throughput, status counts;
  3b. the same arrivals at 2x and 4x by clients that ignore Retry-After and retry a 503 at once:
     on their connection, or on a new connection per attempt (which no per-connection rule
     can hold back);
  3c. closed loops of --impatient clients that retry a 503 at once, ignoring Retry-After;
  4. memory: server RSS before and after --leak-requests requests (after the warm-up above);
     growth over 10 % is flagged.

Every attempt that ends in a reset or an EOF instead of an answer is counted (`resets / EOFs`),
and so are the server's warning lines per phase. A pooled connection is checked before reuse, as
HTTP client libraries do: one the server closed while it sat idle is replaced, and counted apart
(`closed while idle`), not as a reset. Any 5xx other than 503, a reset or EOF, or a
flagged memory growth makes the script exit 1 (after writing results).

    .venv/bin/python benchmarks/load_test.py [--model models/weedscan.onnx] [--duration 20]
        [--threads N] [--leak-requests 2000] [--max-inflight N]

Writes benchmarks/results/load.md and brings RESULTS.md up to date.
Only loopback traffic; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, cpu_seconds, provenance, rss_mb, save_result  # noqa: E402
from serving.config import cpu_count  # noqa: E402
from tests.serving.conftest import LiveServer  # noqa: E402  (the same server wrapper as the tests)

SHARED = REPO.parent / "shared" / "data"
MULTIPLIERS = (1, 2, 4)
GROWTH_FLAG = 0.10


# --- the image ------------------------------------------------------------------------------------

def load_image() -> tuple[str, bytes, str]:
    """A sesame val frame when ../shared is there (what a robot sends), else a synthetic field."""
    found = sorted((SHARED / "sesame" / "images" / "val").glob("*.jpeg"))
    if found:
        return found[0].name, found[0].read_bytes(), "image/jpeg"
    rng = np.random.default_rng(0)
    image = np.full((480, 640, 3), (40, 70, 110), np.uint8)
    image = cv2.add(image, rng.integers(0, 30, image.shape, dtype=np.uint8))
    for _ in range(8):
        cv2.circle(image, (int(rng.integers(0, 640)), int(rng.integers(0, 480))),
                   int(rng.integers(5, 40)), (40, 160, 60), -1)
    ok, buffer = cv2.imencode(".jpg", image)
    assert ok
    return "synthetic 640x480", buffer.tobytes(), "image/jpeg"


# --- the clients ----------------------------------------------------------------------------------

@dataclass
class Phase:
    name: str
    offered_rps: float | None
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)  # of requests that got their 200
    statuses: Counter = field(default_factory=Counter)     # of every attempt
    requests: int = 0
    gave_up: int = 0
    missing_retry_after: int = 0
    transport_errors: int = 0  # attempts answered by a reset or an EOF instead of a status
    other_errors: int = 0  # attempts that failed otherwise (connect refused, timeouts)
    closed_while_idle: int = 0  # pooled connections the server had closed, not reused
    transport_kinds: Counter = field(default_factory=Counter)  # "error, pooled or new connection"
    warnings: int = 0  # WARNING lines the server logged during the phase
    server_cores: float = 0.0  # CPU used over the phase, in cores: the server shares the machine
    client_cores: float = 0.0  # with this load generator
    finished_at: list[float] = field(default_factory=list)  # perf_counter of each 200
    window: tuple[float, float] | None = None  # the seconds of offered load (open loop, timed)

    @property
    def throughput(self) -> float:
        """200s per second: within the offered-load window when there is one (goodput), else
        over the whole phase."""
        if self.window:
            begin, end = self.window
            return sum(begin <= t <= end for t in self.finished_at) / (end - begin)
        return len(self.latencies) / self.wall_s if self.wall_s else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies) * 1000, q)) if self.latencies else float("nan")


class NoAnswer(Exception):
    """A reset or EOF instead of an answer, named with the kind of connection it came on (the
    client is shared by concurrent requests, so this travels with the exception)."""

    def __init__(self, error: BaseException, pooled: bool) -> None:
        super().__init__(f"{type(error).__name__} on a {'pooled' if pooled else 'new'} connection")


class RawClient:
    """A lean HTTP/1.1 keep-alive client for the load generator (loopback only): a request is a
    prebuilt byte string, an answer is read by its Content-Length. With httpx the generator took
    0.65 of the 2 cores at 4x offered load (commit f56d47a's run): the test measured its own
    cost as much as the server's. Idle connections are pooled and reused, as a fleet of robots
    each keeping its connection would."""

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        assert parsed.host in ("127.0.0.1", "localhost", "::1"), url  # loopback only
        self.host, self.port = parsed.host, parsed.port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.closed_while_idle = 0  # pooled connections found closed by the server, not reused

    def request(self, path: str, body: bytes, media: str) -> bytes:
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: {media}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        return head + body

    async def send(self, request: bytes, new_connection: bool = False) -> tuple[int, dict[bytes, bytes]]:
        """Status and headers of the answer (the body is read and dropped). `new_connection`:
        on a connection of its own, closed after the answer."""
        pooled = None
        while self.idle and not new_connection and pooled is None:
            reader, writer = self.idle.pop()
            if reader.at_eof():  # the server closed it while it sat idle: HTTP clients check this
                writer.close()   # before reusing a pooled connection (urllib3, httpcore) too
                self.closed_while_idle += 1
            else:
                pooled = reader, writer
        reader, writer = pooled or await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            headers = dict(line.lower().split(b": ", 1) for line in lines[1:] if b": " in line)
            await reader.readexactly(int(headers.get(b"content-length", b"0")))
        except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError) as exc:
            writer.close()
            raise NoAnswer(exc, pooled=pooled is not None) from exc
        except BaseException:
            writer.close()
            raise
        if new_connection or headers.get(b"connection") == b"close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, headers

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


@dataclass(frozen=True)
class Manners:
    """How a client retries a 503."""

    honour_retry_after: bool = True  # else at once
    new_connection: bool = False  # each attempt on a connection of its own

    def describe(self) -> str:
        if self.honour_retry_after:
            return "waiting Retry-After"
        return "retrying at once" + (", new connection each" if self.new_connection else "")


POLITE = Manners()


async def send_until_answered(http: RawClient, request: bytes, phase: Phase, give_up_s: float,
                              manners: Manners = POLITE) -> None:
    """One client request: retried after Retry-After on 503 (or at once, by a client that
    ignores it), until a final answer or give_up_s. A reset or EOF ends it (counted)."""
    phase.requests += 1
    start = time.perf_counter()
    while True:
        try:
            status, headers = await http.send(request, manners.new_connection)
        except (NoAnswer, ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError) as exc:
            phase.transport_errors += 1
            phase.transport_kinds[str(exc) if isinstance(exc, NoAnswer) else f"{type(exc).__name__} on connect"] += 1
            phase.gave_up += 1
            return
        except (OSError, ValueError):
            phase.other_errors += 1
            phase.gave_up += 1
            return
        phase.statuses[status] += 1
        if status != 503:
            if status == 200:
                done = time.perf_counter()
                phase.latencies.append(done - start)
                phase.finished_at.append(done)
            return
        retry_after = headers.get(b"retry-after")
        if retry_after is None:
            phase.missing_retry_after += 1
        wait = float(retry_after) if retry_after and retry_after.replace(b".", b"", 1).isdigit() else 1.0
        if not manners.honour_retry_after:
            wait = 0.0
        if time.perf_counter() - start + wait > give_up_s:
            phase.gave_up += 1
            return
        await asyncio.sleep(wait)


async def closed_loop(url: str, image: tuple[str, bytes, str], phase: Phase, *, seconds: float | None = None,
                      count: int | None = None, concurrency: int = 1, give_up_s: float = 60,
                      manners: Manners = POLITE) -> Phase:
    """`concurrency` clients back to back, for `seconds` or until `count` requests are done."""
    http = RawClient(url)
    request = http.request("/v1/detect", image[1], image[2])
    start = time.perf_counter()
    phase.window = (start, start + seconds) if seconds else None
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while True:
            if count is not None and issued >= count:
                return
            if seconds is not None and time.perf_counter() - start >= seconds:
                return
            issued += 1
            await send_until_answered(http, request, phase, give_up_s, manners)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.wall_s = time.perf_counter() - start
    phase.closed_while_idle = http.closed_while_idle
    await http.close()
    return phase


async def open_loop(url: str, image: tuple[str, bytes, str], phase: Phase, rate: float, seconds: float,
                    give_up_s: float, seed: int, manners: Manners = POLITE) -> Phase:
    """Poisson arrivals at `rate`/s for `seconds`; each arrival is one client request (with its
    retries). Goodput counts the 200s that came within those `seconds` (the offered load's
    window); the phase then waits for the last request to finish or give up."""
    rng = random.Random(seed)
    http = RawClient(url)
    request = http.request("/v1/detect", image[1], image[2])
    start = time.perf_counter()
    phase.window = (start, start + seconds)
    tasks = []
    next_at = 0.0
    while next_at < seconds:
        delay = start + next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send_until_answered(http, request, phase, give_up_s, manners)))
        next_at += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    phase.wall_s = time.perf_counter() - start
    phase.closed_while_idle = http.closed_while_idle
    await http.close()
    return phase


def warning_lines(log_path: Path) -> int:
    return sum(" WARNING " in line or line.startswith("WARNING") for line in
               log_path.read_text(encoding="utf-8", errors="replace").splitlines())


def run_phase(server: LiveServer, phase: Coroutine[None, None, Phase]) -> Phase:
    """Run one phase, noting the CPU the server and this load generator used meanwhile, and
    the warning lines the server logged."""
    pid = server.process.pid
    warned = warning_lines(server.log_path)
    start, server0, client0 = time.perf_counter(), cpu_seconds(pid), cpu_seconds(os.getpid())
    done = asyncio.run(phase)
    wall = time.perf_counter() - start
    done.server_cores = (cpu_seconds(pid) - server0) / wall
    done.client_cores = (cpu_seconds(os.getpid()) - client0) / wall
    time.sleep(0.2)  # the server's last lines of the phase
    done.warnings = warning_lines(server.log_path) - warned
    return done


def raise_own_file_limit() -> None:
    """Thousands of clients at 4x that retry at once: a socket each."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


# --- the report -----------------------------------------------------------------------------------

def table(phases: list[Phase], capacity: float, peak: float) -> list[str]:
    lines = [("| phase | offered req/s | client requests | goodput 200/s | x 1-client capacity "
              "| x peak capacity | p50 ms | p99 ms | attempts by status | gave up | resets / EOFs "
              "| closed while idle | other errors | server warnings | phase s | server / load generator cores |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in phases:
        offered = f"{p.offered_rps:.1f}" if p.offered_rps else "closed loop"
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(p.statuses.items()))
        lines.append(f"| {p.name} | {offered} | {p.requests} | {p.throughput:.2f} | "
                     f"{p.throughput / capacity:.2f} | {p.throughput / peak:.2f} | {p.percentile(50):.0f} "
                     f"| {p.percentile(99):.0f} | {statuses} | {p.gave_up} | {p.transport_errors} "
                     f"| {p.closed_while_idle} | {p.other_errors} | {p.warnings} "
                     f"| {p.wall_s:.1f} | {p.server_cores:.2f} / {p.client_cores:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per open-loop phase")
    parser.add_argument("--capacity-duration", type=float, default=None,
                        help="seconds of each capacity phase (default: --duration, at most 20)")
    parser.add_argument("--peak-clients", type=int, nargs="+", default=[1, 2, 4],
                        help="closed loops of this many clients measure capacity; the best is the peak")
    parser.add_argument("--threads", type=int, default=cpu_count(), help="WEEDSCAN_THREADS")
    parser.add_argument("--max-inflight", type=int, default=None, help="WEEDSCAN_MAX_INFLIGHT (default: the server's)")
    parser.add_argument("--leak-requests", type=int, default=2000)
    parser.add_argument("--leak-concurrency", type=int, default=2)
    parser.add_argument("--give-up", type=float, default=30.0, help="a client stops retrying after this many s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--multipliers", type=float, nargs="+", default=list(MULTIPLIERS),
                        help="open-loop arrival rates, as multiples of the 1-client capacity")
    parser.add_argument("--rude-multipliers", type=float, nargs="*", default=[2, 4],
                        help="open-loop rates of clients that ignore Retry-After (same and new connection)")
    parser.add_argument("--impatient", type=int, nargs="*", default=[16, 64],
                        help="closed-loop phases of this many clients that retry a 503 at once")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "load.md")
    args = parser.parse_args()

    raise_own_file_limit()
    where = provenance()
    image = load_image()
    log_path = Path(tempfile.mkdtemp(prefix="weedscan-load-")) / "server.log"
    env = {"WEEDSCAN_THREADS": str(args.threads)}
    if args.max_inflight:
        env["WEEDSCAN_MAX_INFLIGHT"] = str(args.max_inflight)
    server = LiveServer(args.model, env=env, log_path=log_path)
    phases: list[Phase] = []
    capacity_s = args.capacity_duration or min(args.duration, 20)
    try:
        asyncio.run(closed_loop(server.url, image, Phase("warm-up", None), count=30, concurrency=2))
        capacities = []
        for clients in sorted(set(args.peak_clients) | {1}):
            phase = run_phase(server, closed_loop(
                server.url, image, Phase(f"capacity ({clients} client{'s' * (clients > 1)})", None),
                seconds=capacity_s, concurrency=clients))
            capacities.append(phase)
            print(f"capacity at concurrency {clients}: {phase.throughput:.2f} req/s "
                  f"(p50 {phase.percentile(50):.0f} ms)", flush=True)
        phases += capacities
        rate = capacities[0].throughput
        peak = max(p.throughput for p in capacities)

        def open_phase(m: float, manners: Manners) -> None:
            label = f"{m:g}x 1-client capacity, {manners.describe()}"
            phase = run_phase(server, open_loop(server.url, image, Phase(label, rate * m), rate * m,
                                                args.duration, args.give_up,
                                                args.seed + int(m * 10), manners))
            phases.append(phase)
            print(f"{label}: {phase.throughput:.2f} 200/s ({phase.throughput / peak:.2f}x peak), "
                  f"p50 {phase.percentile(50):.0f} ms, p99 {phase.percentile(99):.0f} ms, "
                  f"{dict(phase.statuses)}, gave up {phase.gave_up}, resets/EOFs "
                  f"{phase.transport_errors}, closed while idle {phase.closed_while_idle}, warnings {phase.warnings}",
                  flush=True)
            time.sleep(2)  # the last retries drain before the next phase

        for m in args.multipliers:
            open_phase(m, POLITE)
        for m in args.rude_multipliers:  # robots that retry a 503 at once, Retry-After ignored
            open_phase(m, Manners(honour_retry_after=False))
            open_phase(m, Manners(honour_retry_after=False, new_connection=True))
        for clients in args.impatient:
            for manners in (Manners(False), Manners(False, True)):
                phase = run_phase(server, closed_loop(
                    server.url, image, Phase(f"{clients} clients {manners.describe()}", None),
                    seconds=args.duration, concurrency=clients, give_up_s=args.give_up, manners=manners))
                phases.append(phase)
                print(f"{phase.name}: {phase.throughput:.2f} 200/s, {dict(phase.statuses)}, "
                      f"resets/EOFs {phase.transport_errors}, closed while idle {phase.closed_while_idle}",
                      flush=True)
                time.sleep(2)
        # Memory: the server has served the warm-up and all phases above; let retries drain first.
        time.sleep(2)
        rss_before = rss_mb(server.process.pid)
        leak = run_phase(server, closed_loop(server.url, image, Phase(f"{args.leak_requests} requests", None),
                                             count=args.leak_requests, concurrency=args.leak_concurrency))
        time.sleep(1)
        rss_after = rss_mb(server.process.pid)
        phases.append(leak)
    finally:
        server.stop()

    growth = (rss_after - rss_before) / rss_before
    server_errors = {s: n for p in phases for s, n in p.statuses.items() if s >= 500 and s != 503}
    unexpected = {s: n for p in phases for s, n in p.statuses.items() if s not in (200, 503)}
    missing_retry_after = sum(p.missing_retry_after for p in phases)
    resets = sum(p.transport_errors for p in phases)
    overload = [p for p in phases if p.offered_rps and p.offered_rps > 1.5 * rate]
    worst = min((p.throughput / peak for p in overload), default=float("nan"))
    flags = []
    if growth > GROWTH_FLAG:
        flags.append(f"RSS grew {growth:.1%} (> {GROWTH_FLAG:.0%}) over {args.leak_requests} requests")
    if server_errors:
        flags.append(f"server errors other than 503: {server_errors}")
    if unexpected and not server_errors:
        flags.append(f"statuses other than 200/503: {unexpected}")
    if missing_retry_after:
        flags.append(f"{missing_retry_after} 503 answers without Retry-After")
    if resets:
        kinds = sum((p.transport_kinds for p in phases), Counter())
        flags.append(f"{resets} attempts ended in a reset or EOF ("
                     + ", ".join(f"{kind}: {n}" for kind, n in kinds.most_common()) + ")")

    name, data, _ = image
    lines = [
        "## Load (`benchmarks/load_test.py`)", "", where, "",
        (f"Model `{args.model.name}`; one `weedscan serve` process on loopback, WEEDSCAN_THREADS={args.threads}, "
        f"WEEDSCAN_MAX_INFLIGHT={args.max_inflight or 'default'}; image {name} ({len(data) / 1024:.0f} KiB JPEG), "
        f"raw body. Capacity: closed loops of {', '.join(str(p.name.split('(')[1].split()[0]) for p in capacities)} "
        f"client(s) for {capacity_s:g} s each: **1-client capacity {rate:.2f}/s, peak capacity "
        f"{peak:.2f}/s**. Open-loop phases: Poisson arrivals for {args.duration:g} s at a multiple "
        "of the 1-client capacity; a client that gets 503 waits Retry-After and retries, or "
        "(`retrying at once`) ignores it, on its connection or on a new one per attempt; each "
        f"gives up after {args.give_up:g} s. Latency: first send to the final 200, waits "
        "included. Goodput: the 200s that came within the arrival window, per second of it (the "
        "phase then runs on until every client has its answer or gave up: `phase s`), as a ratio "
        "to the 1-client and to the peak capacity of this run. `resets / EOFs`: attempts that "
        "got no answer. `closed while idle`: pooled keep-alive connections the server had closed "
        "(to make room at the connection cap) while their client slept through Retry-After, "
        "found closed before reuse and replaced, as HTTP client libraries do. The load generator "
        "(a lean keep-alive client over raw sockets) runs on "
        "the same cores as the server: the last column shows how the CPU was shared. `N clients "
        f"retrying at once`: N clients back to back for {args.duration:g} s."), "",
        *table(phases, rate, peak), "",
        f"Lowest goodput at 2x offered load or more: **{worst:.2f}x the peak capacity**.", "",
        (f"Server RSS: {rss_before:.1f} MiB after warm-up and the phases above, {rss_after:.1f} MiB after "
         f"{args.leak_requests} more requests ({args.leak_concurrency} concurrent): {growth:+.1%}."), "",
        ("**Flagged:** " + "; ".join(flags)) if flags else
        "No 5xx other than 503, no reset or EOF, every 503 carried Retry-After, RSS growth within 10 %.", "",
    ]
    save_result(args.out, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {args.out}; server log {log_path}")
    if server_errors or resets or growth > GROWTH_FLAG:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
