"""HTTP latency of this checkout's server against an earlier commit's, side by side on one model.

    .venv/bin/python benchmarks/bench_commits.py --base REV [--rounds 12]

With WEEDSCAN_ENGINE=onnxruntime WEEDSCAN_PRECISION=fp32 set, both servers run the same engine
even against a commit from before the engine choice: the HTTP path alone is compared.

The earlier commit is checked out into a temporary git worktree; both servers load the same model
file (this checkout's, by default) and answer the same val images, requests alternating between
them in small steps with the order flipping each round, so a slow spell of this shared machine
hits both. Reports each image's median latency ratio (this / base): "no slower than the previous
commit" reads off it. Writes benchmarks/results/commits.md.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, RESULTS_DIR, provenance, save_result  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
PORTS = {"base": 8191, "this": 8192}


def cli_module(tree: Path) -> str:
    """The CLI entry of a tree: the neutral root where it exists, the trainer's before."""
    return "weedscan_cli" if (tree / "weedscan_cli").is_dir() else "training.cli"


def start_server(tree: Path, model: Path, port: int, threads: int) -> subprocess.Popen:
    env = dict(os.environ, WEEDSCAN_THREADS=str(threads))
    return subprocess.Popen([sys.executable, "-m", cli_module(tree), "serve", "--model", str(model),
                             "--port", str(port)], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(port: int, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the server on port {port} did not become ready")


def post(connection: http.client.HTTPConnection, body: bytes, content_type: str) -> float:
    start = time.perf_counter()
    connection.request("POST", "/v1/detect", body=body,
                       headers={"Content-Type": content_type, "Host": "127.0.0.1"})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"answer {response.status}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--model", type=Path, default=REPO / "models" / "weedscan.onnx")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    images = sorted((SHARED / "sesame" / "images" / "val").glob("*.jpeg"))[:6] + \
        sorted((SHARED / "cwfid" / "images" / "val").glob("*.png"))[:2]
    bodies = [(p.name, p.read_bytes(), "image/jpeg" if p.suffix == ".jpeg" else "image/png") for p in images]
    header = provenance()
    base_rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_tree), base_rev], cwd=REPO, check=True)
        servers = {"base": start_server(base_tree, args.model.resolve(), PORTS["base"], args.threads),
                   "this": start_server(REPO, args.model.resolve(), PORTS["this"], args.threads)}
        try:
            for port in PORTS.values():
                wait_ready(port)
            connections = {k: http.client.HTTPConnection("127.0.0.1", p) for k, p in PORTS.items()}
            times: dict[str, dict[str, list[float]]] = {k: {n: [] for n, _, _ in bodies} for k in PORTS}
            for round_index in range(args.rounds + 1):  # round 0 warms both up, untimed
                order = ["base", "this"] if round_index % 2 == 0 else ["this", "base"]
                for name, body, content_type in bodies:
                    for which in order:
                        time.sleep(0.02)  # ONNX Runtime's threads of the other server settle
                        seconds = post(connections[which], body, content_type)
                        if round_index:
                            times[which][name].append(seconds)
        finally:
            for server in servers.values():
                server.terminate()
                server.wait(timeout=30)
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=REPO, check=False)

    lines = ["## This checkout's server vs an earlier commit's (`benchmarks/bench_commits.py`)", "", header, "",
             f"Base `{base_rev}` vs this checkout, both serving `{args.model.name}`, {args.threads} inference "
             f"threads each, {len(bodies)} val images x {args.rounds} rounds, interleaved (order flipping "
             "each round), one keep-alive client on loopback, `POST /v1/detect` raw body. "
             f"Engine settings (a commit without engines ignores them): WEEDSCAN_ENGINE="
             f"{os.environ.get('WEEDSCAN_ENGINE', 'auto')}, WEEDSCAN_PRECISION="
             f"{os.environ.get('WEEDSCAN_PRECISION', 'auto')}.", "",
             "| image | base median ms | this median ms | this / base |", "|---|---|---|---|"]
    ratios = []
    for name, _, _ in bodies:
        base, this = statistics.median(times["base"][name]), statistics.median(times["this"][name])
        ratios.append(this / base)
        lines.append(f"| {name} | {base * 1000:.1f} | {this * 1000:.1f} | {this / base:.3f} |")
    lines += ["", f"Per image, this / base: median {statistics.median(ratios):.3f} "
              f"(range {min(ratios):.3f}-{max(ratios):.3f}).", ""]
    text = "\n".join(lines)
    save_result(RESULTS_DIR / "commits.md", text)
    print(text)


if __name__ == "__main__":
    main()
