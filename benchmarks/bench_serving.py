"""Serving latency, side by side in one run on the same model and images:

  decode + bare ONNX Runtime session.run  (the floor)
  the serving Detector in process         (decode_image + Detector.detect + the JSON answer)
  HTTP end to end, 1 client               (a real `weedscan serve` on loopback)
  Ultralytics YOLO(model.onnx).predict    (decode + predict)
  an empty ASGI app, the same bodies      (the HTTP floor: uvicorn + httptools and loopback only)
  HTTP end to end, 8 concurrent clients   (throughput)

    .venv/bin/python benchmarks/bench_serving.py [--model models/weedscan.onnx] [--rounds 5]
        [--base REV [--http-only]]

With --base REV, an earlier commit's server (from a git worktree of REV under /tmp) is one more
path, interleaved with this checkout's: "HTTP, REV" beside "HTTP end to end, 1 client", and the
per-image latency ratio of the two is reported (a no-regression check: this / REV <= 1.03).
--http-only leaves out the in-process, Ultralytics and empty-app paths (the floor stays).

Two regimes for the single-image paths:
  back to back  a robot streaming frames as fast as it can: each path takes a few images in a row
                (after one untimed call that wakes its threads);
  10 fps        a camera that leaves idle time between frames: a 100 ms pause before every call,
                so every call starts with sleeping threads that must be woken.
This machine is shared and noisy, so the paths are interleaved in small steps (the order
rotating): a slow spell hits every path alike, and each image's latency through a path is also
compared with its own floor measured moments before or after ("per image"). Every path gets
the machine idle: ONNX Runtime's worker threads spin ~50 ms after each run and would slow down
whichever path came next. The 8-client phase runs last, back to back.

Writes benchmarks/results/serving.md and brings RESULTS.md up to date.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, cpu_seconds, provenance, rss_mb, save_result, stats_ms  # noqa: E402
from serving.config import DEFAULT_MAX_PIXELS, cpu_count  # noqa: E402
from serving.detector import Detector  # noqa: E402
from serving.imaging import decode_image  # noqa: E402
from serving.preprocess import letterbox, to_blob  # noqa: E402
from tests.serving.conftest import LiveServer  # noqa: E402  (the same server wrapper as the tests)

SHARED = REPO.parent / "shared" / "data"
Image = tuple[str, bytes, str]  # name, bytes, media type
Path_ = Callable[[bytes, str], object]  # one image through one path


def load_images(limit: int) -> list[Image]:
    """Sesame 512x512 JPEG frames and CWFID 1296x966 frames from the val splits; CWFID's PNGs are
    sent as JPEG (quality 90), as a camera sends its frames."""
    sesame = sorted((SHARED / "sesame" / "images" / "val").glob("*.jpeg"))[: limit - 4]
    cwfid = sorted((SHARED / "cwfid" / "images" / "val").glob("*.png"))[:4]
    if not sesame or not cwfid:
        raise SystemExit(f"no images under {SHARED}")
    images = [(p.name, p.read_bytes(), "image/jpeg") for p in sesame]
    for path in cwfid:
        ok, jpeg = cv2.imencode(".jpg", cv2.imread(str(path)), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        images.append((path.with_suffix(".jpg").name, jpeg.tobytes(), "image/jpeg"))
    return images


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def bare_path(model: Path, threads: int) -> Path_:
    """The floor: decode, letterbox to the square input, session.run with default options."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    probe = Detector(model, threads=1)
    size, border = probe.input_size, probe.input_border
    session.run(None, {name: to_blob([letterbox(np.zeros((size, size, 3), np.uint8), size)[0]])})
    return lambda data, _media: session.run(None, {name: to_blob([letterbox(decode(data), size, border=border)[0]])})


def detector_path(model: Path, threads: int) -> Path_:
    detector = Detector(model, threads=threads)
    detector.warmup()
    return lambda data, _media: json.dumps(detector.detect(decode_image(data, DEFAULT_MAX_PIXELS)).to_dict())


def ultralytics_path(model: Path) -> Path_ | None:
    try:
        from training.offline import import_ultralytics

        import_ultralytics()
        from ultralytics import YOLO
    except (ImportError, SystemExit):
        return None
    yolo = YOLO(str(model), task="detect")
    size = Detector(model, threads=1).input_size
    yolo.predict(np.zeros((size, size, 3), np.uint8), imgsz=size, verbose=False)
    return lambda data, _media: yolo.predict(decode(data), imgsz=size, verbose=False)


class EmptyAppPath:
    """The HTTP floor: the same body to an ASGI app that only reads it (a subprocess)."""

    def __init__(self) -> None:
        from tests.serving.conftest import free_port

        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "peers" / "empty_app.py"),
                                         str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                self(b"", "application/octet-stream")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def __call__(self, data: bytes, media: str) -> None:
        self.connection.request("POST", "/", body=data, headers={"Content-Type": media})
        self.connection.getresponse().read()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def base_tree(rev: str) -> Path:
    """A git worktree of `rev` under /tmp (made once, kept for the next run)."""
    short = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.strip()
    tree = Path(f"/tmp/wt-{short}")
    if not (tree / "serving").is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), short], cwd=REPO, check=True)
    return tree


class BaseServer:
    """`weedscan serve` of an earlier commit's tree, on the same model, loopback."""

    def __init__(self, tree: Path, model: Path, threads: int) -> None:
        from tests.serving.conftest import free_port

        self.port = free_port()
        module = "weedscan_cli" if (tree / "weedscan_cli").is_dir() else "training.cli"
        env = {**os.environ, "WEEDSCAN_THREADS": str(threads), "WEEDSCAN_MAX_INFLIGHT": "64",
               "PYTHONPATH": str(tree)}
        self.process = subprocess.Popen([sys.executable, "-m", module, "serve", "--model",
                                         str(model.resolve()), "--port", str(self.port)], cwd=tree,
                                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise SystemExit(f"the server of {tree} did not become ready")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class HttpPath:
    """One keep-alive connection with the stdlib client (lean, as a robot's would be); keeps the
    server's own timing of each answer."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.server_timing: list[dict[str, float]] = []

    def __call__(self, data: bytes, media: str) -> None:
        self.connection.request("POST", "/v1/detect", body=data, headers={"Content-Type": media})
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        self.server_timing.append(json.loads(body)["timing_ms"])


def interleaved(paths: dict[str, Path_], images: list[Image], rounds: int, step: int,
                pause_s: float) -> dict[str, list[float]]:
    """Latency of every image through every path, `step` images per path at a time (the order of
    the paths rotating), idle `pause_s` before each step; with step > 1 the step starts with one
    untimed call. Round 0 is a warm-up and dropped."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for round_ in range(rounds + 1):
        for first in range(0, len(images), step):
            chunk = images[first:first + step]
            shift = (first // step + round_) % len(names)
            for name in names[shift:] + names[:shift]:
                time.sleep(pause_s)
                if step > 1:
                    paths[name](chunk[-1][1], chunk[-1][2])
                for _, data, media in chunk:
                    start = time.perf_counter()
                    paths[name](data, media)
                    if round_:
                        times[name].append(time.perf_counter() - start)
    return times


def concurrent_http(port: int, images: list[Image], rounds: int,
                    clients: int) -> tuple[list[float], float]:
    """`clients` threads, each with its own connection, send the images back to back."""
    latencies: list[float] = []

    def client(offset: int) -> None:
        path = HttpPath(port)
        for _ in range(rounds):
            for i in range(len(images)):
                _, data, media = images[(i + offset) % len(images)]
                start = time.perf_counter()
                path(data, media)
                latencies.append(time.perf_counter() - start)
        path.connection.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return latencies, time.perf_counter() - start


def table(times: dict[str, list[float]]) -> list[str]:
    names = {"bare": ("decode + bare `session.run`", "the floor"),
             "detector": ("serving `Detector` in process", "decode_image + detect + JSON answer"),
             "http1": ("HTTP end to end, 1 client", "stdlib keep-alive client on loopback"),
             "ultralytics": ("Ultralytics `YOLO(onnx).predict`", "decode + predict"),
             "empty": ("HTTP floor: empty ASGI app", "uvicorn + httptools reading the same body, "
                       "answering 11 bytes (`benchmarks/peers/empty_app.py`)"),
             "http1_base": ("HTTP end to end, 1 client, base commit", "the same client, the "
                            "earlier commit's server (--base)")}
    floor = np.asarray(times["bare"])
    lines = ["| path | median ms | p95 ms | vs floor | vs floor per image | note |",
             "|---|---|---|---|---|---|"]
    for key, values in times.items():
        s = stats_ms(values)
        ratio = s["median"] / stats_ms(times["bare"])["median"]
        paired = float(np.median(np.asarray(values) / floor))
        lines.append(f"| {names[key][0]} | {s['median']:.1f} | {s['p95']:.1f} | {ratio:.2f}x | "
                     f"{paired:.2f}x | {names[key][1]} |")
    return lines


def against_base(times: dict[str, list[float]], rev: str) -> str:
    """This checkout's HTTP latency per image against the base commit's, measured moments apart."""
    this, base = np.asarray(times["http1"]), np.asarray(times["http1_base"])
    ratio = float(np.median(this / base))
    return (f"This checkout vs `{rev}`, HTTP 1 client, per image (median of this / base): "
            f"**{ratio:.3f}** (medians {np.median(this) * 1000:.1f} vs {np.median(base) * 1000:.1f} ms): "
            f"no regression over 3 % {'met' if ratio <= 1.03 else 'NOT met'}.")


def verdict(times: dict[str, list[float]], images: list[Image]) -> str:
    http, floor = np.asarray(times["http1"]), np.asarray(times["bare"])
    ratio, paired = np.median(http) / np.median(floor), np.median(http / floor)
    text = (f"HTTP vs the floor: {ratio:.2f}x (per image {paired:.2f}x): target <= 1.15x per image "
            f"{'met' if paired <= 1.15 else 'NOT met'}.")
    # times[path][k] is image k % len(images): every path saw the images in the same order
    sesame = np.asarray([images[k % len(images)][0].startswith("agri") for k in range(len(http))])
    text += " Per image by size: " + ", ".join(
        f"{name} {np.median(http[mask] / floor[mask]):.2f}x"
        for name, mask in (("512x512 JPEG", sesame), ("1296x966 JPEG", ~sesame)) if mask.any()) + "."
    if "empty" in times:
        empty = np.asarray(times["empty"])
        own = np.median(http - floor - empty) * 1000
        text += (f" The empty app's round trip of the same bodies is {np.median(empty) * 1000:.2f} ms; "
                 f"weedscan's own share per image (HTTP - floor - empty round trip): {own:.2f} ms.")
    if "ultralytics" in times:
        ultra = np.asarray(times["ultralytics"])
        by_median, per_image = np.median(http) / np.median(ultra), np.median(http / ultra)
        text += (f" HTTP vs Ultralytics predict: {by_median:.2f}x (per image {per_image:.2f}x; "
                 f"HTTP faster on {np.mean(http < ultra):.0%} of images): "
                 f"{'faster' if max(by_median, per_image) < 1 else 'NOT faster'}.")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--step", type=int, default=6, help="images in a row per path, back to back")
    parser.add_argument("--pause-ms", type=float, default=100.0, help="idle time before each step")
    parser.add_argument("--threads", type=int, default=cpu_count())
    parser.add_argument("--base", help="an earlier commit whose server is measured beside this one")
    parser.add_argument("--http-only", action="store_true",
                        help="only the floor and the HTTP paths (with --base: a quicker check)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "serving.md")
    args = parser.parse_args()

    images = load_images(args.images)
    header = provenance()
    pause_s = args.pause_ms / 1000
    server = LiveServer(args.model, env={"WEEDSCAN_THREADS": str(args.threads),
                                         "WEEDSCAN_MAX_INFLIGHT": "64"})
    pid = server.process.pid
    try:
        rss_before = rss_mb(pid)
        http1 = HttpPath(server.port)
        paths: dict[str, Path_] = {"bare": bare_path(args.model, args.threads), "http1": http1}
        if args.base:
            base_server = BaseServer(base_tree(args.base), args.model, args.threads)
            paths["http1_base"] = HttpPath(base_server.port)
        if not args.http_only:
            paths["detector"] = detector_path(args.model, args.threads)
            ultralytics = ultralytics_path(args.model)
            if ultralytics is not None:
                paths["ultralytics"] = ultralytics
            empty = EmptyAppPath()
            paths["empty"] = empty
        streaming = interleaved(paths, images, args.rounds, args.step, pause_s)
        timing = {key: float(np.median([t[key] for t in http1.server_timing[len(images):]]))
                  for key in ("decode", "inference", "total")}
        cpu_before, served_before = cpu_seconds(pid), len(http1.server_timing)
        framed = interleaved(paths, images, args.rounds, 1, pause_s)
        cpu_per_image = (cpu_seconds(pid) - cpu_before) / (len(http1.server_timing) - served_before)
        http8, wall8 = concurrent_http(server.port, images, args.rounds, 8)
        rss_after = rss_mb(pid)
    finally:
        server.stop()
        if "empty" in locals():
            empty.stop()
        if "base_server" in locals():
            base_server.stop()

    s8 = stats_ms(http8)
    lines = [
        "## Serving latency (`benchmarks/bench_serving.py`)", "",
        f"{header}", "",
        f"Model `{args.model.name}`, {len(images)} images (20 sesame 512x512 JPEG, 4 CWFID "
        f"1296x966 frames sent as JPEG, from the val splits) x {args.rounds} rounds per regime, {args.threads} "
        "inference threads. Latency includes decoding in every row.", "",
        f"**Back to back** (a robot streaming frames; {args.step} images in a row per path):", "",
        *table(streaming), "", verdict(streaming, images), "",
        *([against_base(streaming, args.base), ""] if args.base else []),
        f"The server's own timing of these requests (median ms): decode {timing['decode']:.1f}, "
        f"inference {timing['inference']:.1f}, total {timing['total']:.1f}.", "",
        f"**10 fps** (a {args.pause_ms:.0f} ms pause before every call: threads asleep, as between "
        "a camera's frames):", "",
        *table(framed), "", verdict(framed, images), "",
        *([against_base(framed, args.base), ""] if args.base else []),
        f"Server CPU per image at 10 fps: {cpu_per_image * 1000:.0f} ms (all its threads; "
        "WEEDSCAN_SPIN_BETWEEN_REQUESTS=true would add ONNX Runtime's ~50 ms of busy-waiting).", "",
        f"**8 concurrent clients**, back to back: {len(http8) / wall8:.1f} images/s, latency median "
        f"{s8['median']:.1f} ms, p95 {s8['p95']:.1f} ms (queueing included).", "",
        f"Server RSS: {rss_before:.0f} MB after warm-up, {rss_after:.0f} MB after "
        f"{len(http1.server_timing) + len(http8)} requests.", "",
    ]
    save_result(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
