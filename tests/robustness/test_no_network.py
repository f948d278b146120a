"""weedscan runs offline: `weedscan serve` (start, ready, requests) and `weedscan detect IMAGE`
make no outbound connection attempt, and Ultralytics is imported with its telemetry off.

Two layers: a Python socket guard (sitecustomize on PYTHONPATH) that records and refuses every
non-loopback connect/lookup made through Python, and, where strace and network namespaces are
available, a syscall trace that also sees native code (C/C++ libraries with their own HTTP
clients). The commands run in a network namespace of their own when `unshare -n` works, so that
nothing can leave the machine whatever the code under test does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from serving.engines.openvino_engine import openvino_available
from tests import images, netguard

REPO = Path(__file__).resolve().parents[2]
# Switches that would hide what the code does by itself: the tests run without them.
_SCRUBBED = ("ORT_DISABLE_TELEMETRY", "YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_CONFIG_DIR",
             "NO_ALBUMENTATIONS_UPDATE", "PYTHONPATH")


def _netns_works() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


NETNS = _netns_works()
STRACE = shutil.which("strace")


def guarded_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    netguard.write_sitecustomize(site)
    log = tmp_path / "netguard.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update({"PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), netguard.LOG_ENV: str(log),
                "WEEDSCAN_THREADS": "1", "TMPDIR": str(tmp_path)})
    return env, log


# Native telemetry uploaders start on a timer some seconds after start-up: a server is kept up
# this long after its first requests.
LINGER_S = 15.0
TRACED = bool(STRACE and NETNS)  # strace only where the command cannot reach anything anyway


@dataclass
class Offline:
    """One command of offline_run.py, started: in its own folder (its TMPDIR), under the Python
    guard, under strace where TRACED."""
    folder: Path
    process: subprocess.Popen[str]
    guard_log: Path
    trace: Path | None

    def finish(self) -> tuple[dict, list[dict], list[dict], list[str]]:
        """What the command's requests got, the guard's installs and attempts, and the traced
        syscalls that address anything but loopback."""
        try:
            stdout, stderr = self.process.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate()
        assert self.process.returncode == 0, stdout[-2000:] + stderr[-4000:]
        installed, attempts = netguard.read_log(self.guard_log)
        outbound = outbound_syscalls(self.trace) if self.trace is not None else []
        return json.loads(stdout.strip().splitlines()[-1]), installed, attempts, outbound

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()

    def traced_loopback(self) -> bool:
        """Whether the trace saw the command's own loopback connections: that it traced at all."""
        return self.trace is not None and '"127.0.0.1"' in self.trace.read_text(encoding="utf-8")

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir() if p.name.startswith("."))


def start_offline(folder: Path, shipped_model: Path, command: str, *, engine: str,
                  linger: float = 0.0) -> Offline:
    folder.mkdir(parents=True)
    env, log = guarded_env(folder)
    env["WEEDSCAN_ENGINE"] = engine
    image = folder / "field.jpg"
    image.write_bytes(images.encode(images.field_like(640, 480), ".jpg"))
    argv = [sys.executable, "-m", "tests.robustness.offline_run", command, str(shipped_model), str(image),
            "--linger", str(linger)]
    if NETNS:
        argv += ["--netns"]
    trace = folder / "strace.txt" if TRACED else None
    if trace is not None:
        argv = [STRACE, "-f", "--seccomp-bpf", "-qq", "-e", "trace=connect,sendto,sendmsg",
                "-o", str(trace), *argv]
    if NETNS:
        argv = ["unshare", "-n", *argv]
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return Offline(folder, process, log, trace)


_INET = re.compile(r"(connect|sendto|sendmsg)\(.*sa_family=AF_INET6?,.*?"
                   r"(sin_addr=inet_addr\(\"(?P<v4>[^\"]+)\"\)|inet_pton\(AF_INET6, \"(?P<v6>[^\"]+)\")")


def outbound_syscalls(trace: Path) -> list[str]:
    """Syscalls in an strace log that address anything but loopback."""
    found = []
    for line in trace.read_text(encoding="utf-8").splitlines():
        match = _INET.search(line)
        if match and not netguard.is_loopback_host(match["v4"] or match["v6"]):
            found.append(line.strip())
    return found


# --- the guard itself ----------------------------------------------------------------------------

def test_the_in_process_guard_refuses_and_records_outbound_attempts() -> None:
    import socket

    with netguard.guarded() as attempts:
        with pytest.raises(OSError):
            socket.create_connection(("0.0.0.0", 9), timeout=1)  # not loopback for the guard
        with pytest.raises(OSError):
            socket.getaddrinfo("updates.example.invalid", 443)
        with socket.socket() as s, pytest.raises(OSError):
            s.connect(("192.0.2.1", 443))  # TEST-NET-1; refused before any packet
        loopback = socket.socket()
        loopback.settimeout(1)
        assert loopback.connect_ex(("127.0.0.1", 9)) != 0  # loopback passes through (refused: no server)
        loopback.close()
    assert [a.split()[0] for a in attempts] == ["create_connection", "getaddrinfo", "connect"]


def test_the_subprocess_guard_is_installed_and_records(tmp_path: Path) -> None:
    env, log = guarded_env(tmp_path)
    code = ("import socket\n"
            "try:\n    socket.create_connection(('0.0.0.0', 9), timeout=1)\nexcept OSError: pass\n"
            "try:\n    socket.getaddrinfo('0.0.0.0', 80)\nexcept OSError: pass\n")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    installed, attempts = netguard.read_log(log)
    assert len(installed) == 1
    assert [a["kind"] for a in attempts] == ["create_connection", "getaddrinfo"]


def test_in_process_app_and_detector_make_no_attempt(shipped_model: Path) -> None:
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from serving.config import Settings
    from serving.detector import DetectOptions, Detector
    from serving.imaging import decode_image
    from tests.serving.conftest import wait_ready

    jpeg = images.encode(images.field_like(640, 480), ".jpg")
    with netguard.guarded() as attempts:
        detector = Detector(shipped_model, threads=1)
        detector.detect(decode_image(jpeg, 10**8), DetectOptions())
        with TestClient(create_app(Settings(model=shipped_model, threads=1))) as client:
            wait_ready(client.get)
            assert client.post("/v1/detect", content=jpeg, headers={"Content-Type": "image/jpeg"}).status_code == 200
    assert attempts == []


# --- the commands: Python's socket layer, and the syscalls (native code included) -------------

# Each command with every engine (OpenVINO's converter sends an event on import unless kept from
# loading its telemetry: serving/engines/openvino_engine.py); `auto` runs the card's int8 variant
# on OpenVINO where it is installed (engine_that_runs).
ENGINES = ["auto", "onnxruntime", *(["openvino"] if openvino_available() else [])]


def engine_that_runs(shipped_model: Path, engine: str) -> str:
    """The engine a command asked for `engine` runs the shipped model on."""
    from serving.engines.choose import choose_engine
    from serving.model_card import load_card

    return choose_engine(load_card(shipped_model), engine, model_path=shipped_model).engine  # type: ignore[arg-type]


def test_weedscan_serve_makes_no_outbound_attempt_on_any_engine(tmp_path: Path, shipped_model: Path) -> None:
    """A server per engine, side by side: start, ready, requests, then up for LINGER_S."""
    runs = {engine: start_offline(tmp_path / engine, shipped_model, "serve", engine=engine, linger=LINGER_S)
            for engine in ENGINES}
    try:
        for engine, run in runs.items():
            result, installed, attempts, outbound = run.finish()
            assert set(result["statuses"].values()) == {200}, (engine, result)
            assert result["engine"] == engine_that_runs(shipped_model, engine)
            commands = {" ".join(i["argv"]) for i in installed}
            assert any("serve" in c for c in commands), f"the guard did not reach the server: {commands}"
            assert attempts == [], (engine, attempts)
            assert outbound == [], f"{engine}: outbound network syscalls:\n" + "\n".join(outbound[:10])
            assert run.traced_loopback() == TRACED, f"{engine}: strace saw none of the requests"
            assert run.leftovers() == [], f"{engine}: files left in TMPDIR: {run.leftovers()}"
    finally:
        for run in runs.values():
            run.stop()


def test_weedscan_detect_makes_no_outbound_attempt_on_any_engine(tmp_path: Path, shipped_model: Path) -> None:
    runs = {engine: start_offline(tmp_path / engine, shipped_model, "detect", engine=engine) for engine in ENGINES}
    try:
        for engine, run in runs.items():
            result, installed, attempts, outbound = run.finish()
            assert result["returncode"] == 0, (engine, result)
            line = json.loads(result["stdout"].splitlines()[0])
            assert line["image"] == {"width": 640, "height": 480}
            assert line["model"]["engine"] == engine_that_runs(shipped_model, engine)
            assert any("detect" in " ".join(i["argv"]) for i in installed)
            assert attempts == [], (engine, attempts)
            assert outbound == [], f"{engine}: outbound network syscalls:\n" + "\n".join(outbound[:10])
    finally:
        for run in runs.values():
            run.stop()


def test_outbound_syscalls_are_recognised(tmp_path: Path) -> None:
    trace = tmp_path / "t.txt"
    trace.write_text(
        '1 connect(8, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0\n'
        '1 connect(9, {sa_family=AF_INET, sin_port=htons(8000), sin_addr=inet_addr("127.0.0.1")}, 16) = 0\n'
        '1 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT\n'
        '1 connect(5, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28) = -1\n'
        '1 connect(5, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0\n', encoding="utf-8")
    assert len(outbound_syscalls(trace)) == 2


# --- Ultralytics ----------------------------------------------------------------------------------

_PROBE = """
import json, os
from training.offline import import_ultralytics
import_ultralytics()
from ultralytics.utils import SETTINGS, ONLINE, AUTOINSTALL
from ultralytics.utils.events import events
keys = ["sync", "clearml", "comet", "dvc", "mlflow", "raytune", "wandb", "tensorboard"]
print(json.dumps({"settings": {k: SETTINGS.get(k) for k in keys}, "settings_file": str(SETTINGS.file),
                  "env": {k: os.environ.get(k) for k in ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_CONFIG_DIR")},
                  "online": ONLINE, "autoinstall": AUTOINSTALL, "events_enabled": bool(events.enabled)}))
"""


@pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None, reason="the train extra is not installed")
def test_ultralytics_is_imported_with_every_telemetry_switch_off(tmp_path: Path) -> None:
    env, log = guarded_env(tmp_path)
    env["WEEDSCAN_CACHE"] = str(tmp_path / "cache")
    argv = [sys.executable, "-c", _PROBE]
    if NETNS:
        argv = ["unshare", "-n", *argv]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["settings"] == {k: False for k in found["settings"]}, found
    assert found["env"]["YOLO_OFFLINE"] == "1"
    assert found["env"]["YOLO_AUTOINSTALL"].lower() == "false" and found["autoinstall"] is False
    assert Path(found["env"]["YOLO_CONFIG_DIR"]).is_relative_to(tmp_path / "cache")
    assert found["online"] is False and found["events_enabled"] is False
    on_disk = json.loads(Path(found["settings_file"]).read_text(encoding="utf-8"))
    assert Path(found["settings_file"]).is_relative_to(tmp_path / "cache")
    assert on_disk["sync"] is False and not any(on_disk.get(k) for k in found["settings"])
    installed, attempts = netguard.read_log(log)
    assert installed and attempts == [], attempts
