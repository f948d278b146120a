"""weedscan against what a user would run instead, side by side on the same model and images:

  weedscan   a real `weedscan serve` on loopback, POST /v1/detect (raw JPEG/PNG body), as it
             serves by default (auto) and with each engine and precision this machine has forced
  naive      a minimal FastAPI server wrapping Ultralytics YOLO(model.onnx).predict
             (benchmarks/peers/naive_ultralytics_server.py), POST /detect
  in-process Ultralytics YOLO(model.onnx).predict in this process (no HTTP at all)

    .venv/bin/python benchmarks/bench_peers.py [--model models/weedscan.onnx] [--rounds 5]

Reports start-to-ready, median and p95 latency per image (interleaved, one keep-alive client
each), 8-client throughput against the bare ONNX Runtime loop, server RSS, and whether each
weedscan variant's answers agree with ONNX Runtime fp32's (every confident box of one has a box
of the same class within 2 px in the other). Writes benchmarks/results/peers.md.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_serving import load_images, ultralytics_path  # noqa: E402
from benchmarks.bench_throughput import bare_loop_path  # noqa: E402
from benchmarks.common import REPO, RESULTS_DIR, provenance, rss_mb, save_result, stats_ms  # noqa: E402
from serving.config import cpu_count  # noqa: E402
from serving.detector import Detector  # noqa: E402
from serving.engines.cpu import this_cpu  # noqa: E402
from serving.engines.openvino_engine import openvino_available  # noqa: E402
from serving.model_card import load_card  # noqa: E402
from tests.serving.conftest import free_port  # noqa: E402

AGREE_PX = 2.0
# The independent check's reference: the server told to run as weedscan always has.
REFERENCE_ENV = {"WEEDSCAN_ENGINE": "onnxruntime", "WEEDSCAN_PRECISION": "fp32"}
REFERENCE = "weedscan onnxruntime fp32"
IDLE_BEFORE_CALL_S = 0.1  # every path starts on an idle machine
Answer = tuple[np.ndarray, np.ndarray]  # boxes (N, 4), classes (N,)


class Server:
    """A server process on loopback, timed from start to its first ready answer."""

    def __init__(self, command: list[str], port: int, ready_path: str, route: str,
                 parse: Callable[[dict], Answer], env: dict[str, str] | None = None) -> None:
        self.port, self.route, self.parse = port, route, parse
        self.log = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        start = time.perf_counter()
        self.process = subprocess.Popen(command, env={**os.environ, **(env or {})},
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", ready_path)
                if connection.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise SystemExit(f"{command[:3]} did not become ready")
        self.start_to_ready_s = time.perf_counter() - start
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def answer_json(self, data: bytes, media: str, connection: http.client.HTTPConnection | None = None) -> dict:
        connection = connection or self.connection
        connection.request("POST", self.route, body=data, headers={"Content-Type": media})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        return json.loads(body)

    def __call__(self, data: bytes, media: str, connection: http.client.HTTPConnection | None = None) -> Answer:
        return self.parse(self.answer_json(data, media, connection))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def weedscan_answer(body: dict) -> Answer:
    boxes = [[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in body["detections"]]
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray([d["class_id"] for d in body["detections"]], int)


def naive_answer(body: dict) -> Answer:
    boxes = [d["box"] for d in body["detections"]]
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray([d["class_id"] for d in body["detections"]], int)


def agree(a: Answer, b: Answer) -> bool:
    """Every box of a has a box of its class in b within AGREE_PX on every side, and back."""
    for (boxes, classes), (others, other_classes) in ((a, b), (b, a)):
        for box, cls in zip(boxes, classes):
            same = others[other_classes == cls]
            if not len(same) or np.abs(same - box).max(1).min() > AGREE_PX:
                return False
    return True


def bare_loop_rate(bare: Callable[[bytes, str], object], images: list, rounds: int) -> float:
    """Images/s of decode + letterbox + ONNX Runtime fp32, one after another in this process: the
    floor a server's concurrency is measured against."""
    bare(images[0][1], images[0][2])
    start = time.perf_counter()
    for _ in range(rounds):
        for _, data, media in images:
            bare(data, media)
    return rounds * len(images) / (time.perf_counter() - start)


def throughput(server: Server, images: list, rounds: int, clients: int) -> float:
    """Images/s of `clients` keep-alive clients, after one untimed round of the same load (a
    server's steady state: the shapes and batches it meets under load are prepared)."""
    def client(offset: int, rounds: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for _ in range(rounds):
            for i in range(len(images)):
                _, data, media = images[(i + offset) % len(images)]
                server(data, media, connection)
        connection.close()
        return rounds * len(images)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients), [1] * clients))
    time.sleep(2.0)  # what the warm-up round started (OpenVINO's per-shape compiles) finishes
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(client, range(clients), [rounds] * clients))
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--throughput-rounds", type=int, default=4,
                        help="rounds of the images per client in the timed throughput run")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "peers.md")
    args = parser.parse_args()

    header = provenance()
    images = load_images(args.images)
    detector = Detector(args.model, threads=1)
    size, conf, iou = detector.input_size, detector.default_conf, detector.default_iou
    threads = str(cpu_count())
    def weedscan(env: dict[str, str]) -> Server:
        port = free_port()
        return Server([sys.executable, "-m", "training.cli", "serve", "--model", str(args.model),
                       "--host", "127.0.0.1", "--port", str(port)],
                      port, "/readyz", "/v1/detect", weedscan_answer, {"WEEDSCAN_THREADS": threads, **env})

    # weedscan as it serves by default (auto), and each engine and precision forced beside it
    variants = {"weedscan": {}, REFERENCE: REFERENCE_ENV}
    if openvino_available():
        variants["weedscan openvino fp32"] = {"WEEDSCAN_ENGINE": "openvino", "WEEDSCAN_PRECISION": "fp32"}
        if this_cpu().native_bf16:
            variants["weedscan openvino bf16"] = {"WEEDSCAN_ENGINE": "openvino", "WEEDSCAN_PRECISION": "bf16"}
        if load_card(args.model, verify=False).variant("openvino", "int8"):
            variants["weedscan openvino int8"] = {"WEEDSCAN_ENGINE": "openvino", "WEEDSCAN_PRECISION": "int8"}
    servers = {name: weedscan(env) for name, env in variants.items()}
    servers["naive"] = Server([sys.executable, str(REPO / "benchmarks" / "peers" / "naive_ultralytics_server.py"),
                               str(args.model), str(port2 := free_port()), str(size), str(conf), str(iou)],
                              port2, "/ready", "/detect", naive_answer)
    chosen = servers["weedscan"].answer_json(images[0][1], images[0][2])["model"]  # what auto chose
    in_process = ultralytics_path(args.model)
    paths: dict[str, Callable[[bytes, str], object]] = {**servers}
    if in_process is not None:
        paths["in-process"] = in_process
    times: dict[str, list[float]] = {name: [] for name in paths}
    # Each path against weedscan as it always ran (ONNX Runtime fp32). The naive server differs
    # by design: it fills the input to its edge, weedscan keeps the card's grey frame round it.
    agreed = {name: 0 for name in servers if name != REFERENCE}
    compared = 0
    names = list(paths)
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for i, (_, data, media) in enumerate(images):
            shift = (i + round_) % len(names)
            answers = {}
            for name in names[shift:] + names[:shift]:
                # ONNX Runtime's threads in the peers busy-wait ~50 ms after each run (weedscan's
                # rest): without this pause the path after them would share the cores with that
                time.sleep(IDLE_BEFORE_CALL_S)
                start = time.perf_counter()
                answers[name] = paths[name](data, media)
                if round_:
                    times[name].append(time.perf_counter() - start)
            if round_ == 1:
                compared += 1
                for name in agreed:
                    agreed[name] += agree(answers[name], answers[REFERENCE])
    # The bare loop before each server's turn and after the last, so that a shared machine's
    # drift shows in its spread instead of in one server's ratio.
    bare = bare_loop_path(args.model, int(threads))
    bare_rates = [bare_loop_rate(bare, images, args.throughput_rounds)]
    rates = {}
    for name, server in servers.items():
        rates[name] = throughput(server, images, args.throughput_rounds, args.clients)
        bare_rates.append(bare_loop_rate(bare, images, args.throughput_rounds))
    bare_rate = float(np.median(bare_rates))
    rss = {name: rss_mb(server.process.pid) for name, server in servers.items()}
    for server in servers.values():
        server.stop()

    naive_median = stats_ms(times["naive"])["median"]
    lines = ["## weedscan and its peers (`benchmarks/bench_peers.py`)", "", header, "",
             f"Model `{args.model.name}` (input {size}), {len(images)} val images (sesame JPEG, CWFID as JPEG) x "
             f"{args.rounds} interleaved rounds, one keep-alive stdlib client per path, each call after "
             f"{IDLE_BEFORE_CALL_S * 1000:.0f} ms idle (so no path runs while a peer's threads still spin); then "
             f"{args.clients} concurrent keep-alive clients per server, {args.throughput_rounds} rounds each "
             "timed after one untimed round (the server's steady state). Every server gets all "
             f"{threads} cores. "
             f"`weedscan` is the default (`auto`: here {chosen['engine']} {chosen['precision']}); the "
             "others force WEEDSCAN_ENGINE/WEEDSCAN_PRECISION. The bare loop: decode + letterbox + "
             f"ONNX Runtime fp32 one image after another in one process, measured before each server's "
             f"turn and after the last: median {bare_rate:.1f} img/s "
             f"({min(bare_rates):.1f}-{max(bare_rates):.1f}).", "",
             f"CPU flags: {this_cpu().summary()}.", "",
             "| path | start to ready s | median ms | p95 ms | x naive | "
             f"{args.clients}-client img/s | x bare loop | RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for name in paths:
        latency = stats_ms(times[name])
        server = servers.get(name)
        lines.append(f"| {name} | {f'{server.start_to_ready_s:.1f}' if server else '-'} | "
                     f"{latency['median']:.1f} | {latency['p95']:.1f} | "
                     f"{latency['median'] / naive_median:.2f}x | "
                     f"{f'{rates[name]:.1f}' if name in rates else '-'} | "
                     f"{f'{rates[name] / bare_rate:.2f}x' if name in rates else '-'} | "
                     f"{f'{rss[name]:.0f}' if name in rss else '-'} |")
    ratio = stats_ms(times["weedscan"])["median"] / naive_median
    scale = rates["weedscan"] / bare_rate
    lines += ["", f"Answers that agree with `{REFERENCE}` (boxes of the same class within {AGREE_PX:.0f} px): "
                  + ", ".join(f"{name} {agreed[name]} of {compared}" for name in agreed) + " images.",
              f"Target weedscan (default) <= 0.6x the naive server's latency: "
              f"{'met' if ratio <= 0.6 else 'not met'} ({ratio:.2f}x); "
              f"{args.clients} clients >= 1.5x the bare loop: {'met' if scale >= 1.5 else 'not met'} ({scale:.2f}x)."]
    text = "\n".join(lines) + "\n"
    save_result(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
