"""Serving latency, side by side in one run on the same model and images:

  decode + bare ONNX Runtime session.run  (the floor)
  the serving Detector in process         (decode_image + Detector.detect)
  HTTP end to end, 1 client and 8 concurrent clients (a real `weedscan serve` on loopback)
  Ultralytics YOLO(model.onnx).predict    (on the same decoded image)

    .venv/bin/python benchmarks/bench_serving.py [--model models/weedscan.onnx] [--rounds 3]

Writes benchmarks/results/serving.md (assembled into RESULTS.md by benchmarks/collect.py).
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance, rss_mb, stats_ms  # noqa: E402
from serving.detector import Detector  # noqa: E402
from serving.imaging import decode_image  # noqa: E402
from serving.preprocess import letterbox, to_blob  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
MAX_PIXELS = 64_000_000


def load_images(limit: int) -> list[tuple[str, bytes, str]]:
    """(name, bytes, media type): sesame JPEG frames and CWFID PNGs, as robots and phones send."""
    found = sorted((SHARED / "sesame" / "images" / "val").glob("*.jpeg"))[: limit - 4] + \
        sorted((SHARED / "cwfid" / "images" / "val").glob("*.png"))[:4]
    if not found:
        raise SystemExit(f"no images under {SHARED}")
    return [(p.name, p.read_bytes(), "image/png" if p.suffix == ".png" else "image/jpeg") for p in found]


def bench_bare(model: Path, images: list[tuple[str, bytes, str]], rounds: int, threads: int) -> list[float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    size = Detector(model, threads=1).input_size
    session.run(None, {name: to_blob([letterbox(np.zeros((size, size, 3), np.uint8), size)[0]])})
    times = []
    for _ in range(rounds):
        for _, data, _ in images:
            start = time.perf_counter()
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            session.run(None, {name: to_blob([letterbox(image, size)[0]])})
            times.append(time.perf_counter() - start)
    return times


def bench_detector(model: Path, images: list[tuple[str, bytes, str]], rounds: int, threads: int) -> list[float]:
    detector = Detector(model, threads=threads)
    detector.warmup()
    times = []
    for _ in range(rounds):
        for _, data, _ in images:
            start = time.perf_counter()
            result = detector.detect(decode_image(data, MAX_PIXELS))
            result.to_dict()
            times.append(time.perf_counter() - start)
    return times


def bench_ultralytics(model: Path, images: list[tuple[str, bytes, str]], rounds: int) -> list[float] | None:
    try:
        from training.offline import import_ultralytics

        import_ultralytics()
        from ultralytics import YOLO
    except (ImportError, SystemExit):
        return None
    yolo = YOLO(str(model), task="detect")
    size = Detector(model, threads=1).input_size
    decoded = [cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR) for _, d, _ in images]
    yolo.predict(decoded[0], imgsz=size, verbose=False)
    times = []
    for _ in range(rounds):
        for (_, data, _), _image in zip(images, decoded):
            start = time.perf_counter()
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            yolo.predict(image, imgsz=size, verbose=False)
            times.append(time.perf_counter() - start)
    return times


def start_server(model: Path, port: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "WEEDSCAN_THREADS": str(threads), "WEEDSCAN_MAX_INFLIGHT": "64"}
    process = subprocess.Popen([sys.executable, "-m", "training.cli", "serve", "--model", str(model),
                                "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("server did not become ready")


def bench_http(port: int, images: list[tuple[str, bytes, str]], rounds: int,
               clients: int) -> tuple[list[float], float]:
    """Each client (a thread with one keep-alive connection, stdlib http.client: a lean client,
    as a robot's would be) sends the images one after the other; returns latencies and wall time."""
    latencies: list[float] = []

    def client(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(rounds):
            for i in range(len(images)):
                _, data, media = images[(i + offset) % len(images)]
                start = time.perf_counter()
                connection.request("POST", "/v1/detect", body=data, headers={"Content-Type": media})
                response = connection.getresponse()
                body = response.read()
                latencies.append(time.perf_counter() - start)
                assert response.status == 200, body[:200]
        connection.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return latencies, time.perf_counter() - start


def row(name: str, times: list[float], wall: float | None = None, note: str = "") -> str:
    s = stats_ms(times)
    throughput = len(times) / (wall if wall else sum(times))
    return f"| {name} | {s['median']:.1f} | {s['p95']:.1f} | {throughput:.1f} | {note} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    images = load_images(args.images)
    header = provenance()
    bare = bench_bare(args.model, images, args.rounds, args.threads)
    detector = bench_detector(args.model, images, args.rounds, args.threads)
    server = start_server(args.model, args.port, args.threads)
    try:
        rss_before = rss_mb(server.pid)
        http1, wall1 = bench_http(args.port, images, args.rounds, 1)
        http8, wall8 = bench_http(args.port, images, args.rounds, 8)
        rss_after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=15)
    ultra = bench_ultralytics(args.model, images, args.rounds)

    ratio = stats_ms(http1)["median"] / stats_ms(bare)["median"]
    lines = [
        "## Serving latency (`benchmarks/bench_serving.py`)", "",
        f"{header}", "",
        f"Model `{args.model.name}`, {len(images)} images (sesame 512x512 JPEG and CWFID 1296x966 PNG "
        f"from the val splits) x {args.rounds} rounds, {args.threads} inference threads. "
        "Latency per image includes decoding in every row.", "",
        "| path | median ms | p95 ms | images/s | note |", "|---|---|---|---|---|",
        row("decode + bare `session.run`", bare, note="the floor"),
        row("serving `Detector` in process", detector, note="decode_image + detect + answer"),
        row("HTTP end to end, 1 client", http1, wall1, note=f"{ratio:.2f}x the floor (target <= 1.15x)"),
        row("HTTP end to end, 8 clients", http8, wall8, note="latency includes queueing"),
    ]
    if ultra is not None:
        lines.append(row("Ultralytics `YOLO(onnx).predict`", ultra, note="decode + predict"))
    lines += ["", f"Server RSS: {rss_before:.0f} MB after warm-up, {rss_after:.0f} MB after "
              f"{len(http1) + len(http8)} requests.", ""]
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "serving.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
