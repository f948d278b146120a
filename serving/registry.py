"""Several models in one server: which are in the models folder, which are loaded, which is active.

Every model of WEEDSCAN_MODELS_DIR has a slot: `available` (its card read), `loaded` (an ONNX
Runtime session, warmed) or `broken` (with the reason; it never stops the others). The active
model answers requests that name none; `?model=NAME` picks another, loading it on demand.

Loading, checking and unloading run on one loader thread, never on a request's path; the event
loop only reads. A swap loads and warms the new session first and then moves the `active`
pointer: a request already running keeps the detector it took (a plain reference), so it
finishes on the old session, which is freed when the last of them lets go.

The active choice lives in the folder (`.active.json`, serving/models_dir.py). Each worker
process stats it on every request (a few microseconds) and, when it changed, refreshes on its
loader thread: that is how `--workers N` processes and `weedscan models activate` agree.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from serving.detector import Detector
from serving.errors import ModelCardError
from serving.memory import return_memory
from serving.model_card import ModelCard, card_path_for, load_card
from serving.models_dir import (
    ACTIVE_FILE,
    check_model,
    default_active,
    file_key,
    model_files,
    read_active,
    write_active,
)

log = logging.getLogger("weedscan")

State = Literal["loaded", "available", "broken"]
DiskKey = tuple[object, ...]
FileKey = tuple[int, int, int] | None
ModelKey = tuple[FileKey, FileKey]


def model_key(path: Path) -> ModelKey:
    """The model file's identity and its card's: either written anew (a card copied after its
    model, as a plain copy does) makes the slot read again."""
    return file_key(path), file_key(card_path_for(path))


def model_load_error(path: Path, exc: BaseException) -> str:
    """One line that says why a model could not be opened (for the log, /readyz and the CLI)."""
    if isinstance(exc, ModelCardError):  # missing file or card, or a sha256 mismatch: says so
        return str(exc)
    detail = " ".join(str(exc).split()) or type(exc).__name__  # ONNX Runtime's text, one line
    return (f"ONNX Runtime cannot load the model {path} (damaged, truncated or not a weedscan "
            f"ONNX model): {detail}")


class ModelUnavailable(ModelCardError):
    """A model that is not in the registry, or broken; the message says which and why."""


@dataclass
class ModelSlot:
    name: str
    path: Path
    key: ModelKey  # the identity of the model's file and its card's when the card was read
    card: ModelCard | None = None
    checked: bool = False  # sha256 and an ONNX Runtime session verified (not only the card read)
    error: str | None = None
    detector: Detector | None = None
    last_used: float = 0.0

    @property
    def state(self) -> State:
        if self.error is not None:
            return "broken"
        return "loaded" if self.detector is not None else "available"


class ModelRegistry:
    def __init__(self, models_dir: Path, make_detector: Callable[[Path], Detector],
                 max_loaded: int, pinned: Path | None = None,
                 injected: Detector | None = None,
                 on_active: Callable[[Detector], None] | None = None,
                 pinned_since: float | None = None) -> None:
        """`pinned`: `--model PATH`, the active model at start whatever the folder says, unless
        the folder's choice was written after `pinned_since` (when `weedscan serve` started: a
        worker started again after a swap follows the swap, as the others do).
        `injected`: a ready Detector (tests), pinned likewise. `on_active` hears each switch."""
        self.models_dir = Path(models_dir)
        self.max_loaded = max_loaded
        self.pinned = pinned
        self.pinned_since = pinned_since
        self.active: str | None = None
        self._make = make_detector
        self._injected = injected
        self._on_active = on_active or (lambda detector: None)
        self._slots: dict[str, ModelSlot] = {}
        self._pinned_name: str | None = None
        self._lock = threading.Lock()
        # Held while the active choice is written and switched to: a reader of the folder's
        # choice on another thread must not act on what it read before such a switch.
        self._choosing = threading.Lock()
        self._disk_key: DiskKey | None = None

    # --- reads (any thread) ---------------------------------------------------------------------
    def slots(self) -> list[ModelSlot]:
        with self._lock:
            return sorted(self._slots.values(), key=lambda s: s.name)

    def slot(self, name: str) -> ModelSlot | None:
        with self._lock:
            return self._slots.get(name)

    def names(self) -> list[str]:
        return [s.name for s in self.slots()]

    def active_detector(self) -> Detector | None:
        slot = self.slot(self.active) if self.active else None
        return slot.detector if slot else None

    def usable(self, name: str) -> ModelSlot:
        """The slot of a model a request may use; ModelUnavailable naming the others otherwise."""
        slot = self.slot(name)
        if slot is None:
            good = [s.name for s in self.slots() if s.error is None]
            raise ModelUnavailable(f"unknown model {name[:64]!r}; "
                                   f"available: {', '.join(good) or 'none'}")
        if slot.error is not None:
            raise ModelUnavailable(f"model {name} is broken: {slot.error}")
        if slot.card is None:
            raise ModelUnavailable(f"model {name} is not ready yet; retry shortly")
        return slot

    def disk_changed(self) -> bool:
        """Whether the folder or its active choice changed since the last look (two stats)."""
        key = self._disk_state()
        if key == self._disk_key:
            return False
        self._disk_key = key
        return True

    def _disk_state(self) -> DiskKey:
        return (file_key(self.models_dir), file_key(self.models_dir / ACTIVE_FILE))

    # --- the loader thread ----------------------------------------------------------------------
    def start(self) -> Detector:
        """Read the folder, load and warm the active model (the others are checked after, by
        `check_all`). A broken pinned model raises; a broken chosen one falls back to another."""
        self._disk_key = self._disk_state()
        self.scan(check=False)
        if self._injected is not None:
            self._pin(self._injected.model_path, self._injected)
        elif self.pinned is not None:
            self._pin(self.pinned)
        if self._pinned_name is not None and not self._swapped_since_start():
            return self._switch(self._pinned_name)
        chosen = default_active(self.models_dir, self.names())
        if chosen is None:
            raise ModelCardError(f"no model (NAME.onnx with its card NAME.json) in {self.models_dir}")
        try:
            return self._switch(chosen)
        except Exception as first:
            for name in self.names():
                if name == chosen:
                    continue
                try:
                    detector = self._switch(name)
                except Exception:  # noqa: BLE001 - its reason is in its slot
                    continue
                broken = self.slot(chosen)
                log.error("error: the active model %s is broken (%s); serving %s instead",
                          chosen, broken.error if broken else first, name)
                return detector
            raise

    def _swapped_since_start(self) -> bool:
        """The folder's active choice was written while this server ran (by a swap)."""
        if self.pinned_since is None:
            return False
        try:
            changed = (self.models_dir / ACTIVE_FILE).stat().st_mtime
        except OSError:
            return False
        return changed > self.pinned_since and read_active(self.models_dir) in self.names()

    def _pin(self, path: Path, detector: Detector | None = None) -> None:
        try:
            card = detector.model_card if detector else load_card(path, verify=False)
            name = card.name
        except Exception:  # noqa: BLE001 - its load gives the reason
            card, name = None, path.stem
        slot = ModelSlot(name, path, model_key(path), card, checked=detector is not None,
                         detector=detector)
        with self._lock:
            self._slots[name] = slot
        self._pinned_name = name

    def scan(self, check: bool = True) -> None:
        """Bring the slots in line with the folder: new files get a slot, a replaced file a fresh
        one, a removed one goes (unless it is active or pinned); with `check`, every unchecked
        model is verified."""
        files = model_files(self.models_dir)
        with self._lock:
            for name, path in files.items():
                slot = self._slots.get(name)
                if name == self._pinned_name or name == self.active and slot and slot.detector:
                    continue  # what is served is never replaced under a request
                key = model_key(path)
                if slot is None or slot.path != path or slot.key != key:
                    self._slots[name] = self._read(name, path, key)
            for name in [n for n in self._slots if n not in files]:
                if name != self._pinned_name and name != self.active:
                    del self._slots[name]
        if check:
            self.check_all()

    def _read(self, name: str, path: Path, key: ModelKey) -> ModelSlot:
        """A slot with the card read (cheap); the sha256 and session are checked later."""
        slot = ModelSlot(name, path, key)
        try:
            slot.card = load_card(path, verify=False)
            if slot.card.name != name:
                slot.error = (f"{path.name}'s card names the model {slot.card.name!r}: a model's "
                              f"file is NAME.onnx with a card of that name")
        except Exception as exc:  # noqa: BLE001
            slot.error = model_load_error(path, exc)
        return slot

    def check_all(self) -> None:
        for slot in self.slots():
            if not slot.checked and slot.error is None:
                self._check(slot)

    def _check(self, slot: ModelSlot) -> None:
        try:
            slot.card = check_model(slot.path)
            slot.checked = True
        except Exception as exc:  # noqa: BLE001 - broken, with its reason
            slot.error = model_load_error(slot.path, exc)
            log.warning("model %s is broken: %s", slot.name, slot.error)

    def load(self, name: str) -> Detector:
        """The model's warmed detector, loading it if needed (then the least recently used
        loaded model beyond the cap is unloaded, never the active one)."""
        slot = self.usable(name)
        if slot.detector is not None:
            return slot.detector
        if not slot.checked:
            self._check(slot)
            if slot.error is not None:
                raise ModelUnavailable(f"model {name} is broken: {slot.error}")
        try:
            detector = self._make(slot.path)
            detector.warmup()
        except Exception as exc:
            slot.error = model_load_error(slot.path, exc)
            raise ModelUnavailable(slot.error) from exc
        slot.card = detector.model_card
        slot.last_used = time.monotonic()
        slot.detector = detector
        choice = detector.engine_choice
        log.info("model %s loaded on %s in %s (%s)", name, detector.providers, choice.precision, choice.reason)
        self._evict(keep=name)
        return detector

    def _switch(self, name: str) -> Detector:
        detector = self.load(name)
        self.active = name
        self._on_active(detector)
        self._evict(keep=name)
        return detector

    def unload(self, name: str) -> bool:
        """Drop the model's session (requests still running on it keep it until they end)."""
        slot = self.slot(name)
        if slot is None or slot.detector is None or name == self.active:
            return False
        slot.detector = None
        return_memory()
        log.info("model %s unloaded", name)
        return True

    def _evict(self, keep: str) -> None:
        loaded = [s for s in self.slots() if s.detector is not None]
        spare = sorted((s for s in loaded if s.name not in (keep, self.active)),
                       key=lambda s: s.last_used)
        for slot in spare[:max(0, len(loaded) - self.max_loaded)]:
            self.unload(slot.name)

    def activate(self, name: str, persist: bool = True) -> Detector:
        """Load and warm `name`, record the choice in the folder (every worker follows it), then
        switch. OSError when the folder cannot be written: nothing switches then."""
        self.load(name)
        with self._choosing:
            if persist:
                write_active(self.models_dir, name)
                self._disk_key = self._disk_state()  # our own write: nothing to refresh
            if self.active != name:
                log.info("model %s is now the active model (was %s)", name, self.active)
            return self._switch(name)

    def follow_loaded(self) -> None:
        """When the folder's active choice is a model already loaded here, switch at once (a
        pointer move, no load: safe on the event loop); `refresh` does the rest."""
        if not self._choosing.acquire(blocking=False):
            return  # a switch is under way on the loader thread; its refresh comes after it
        try:
            chosen = read_active(self.models_dir)
            slot = self.slot(chosen) if chosen and chosen != self.active else None
            if slot is not None and slot.detector is not None and slot.error is None:
                self.active = chosen
                self._on_active(slot.detector)
                log.info("model %s is now the active model (the models folder says so)", chosen)
        finally:
            self._choosing.release()

    def refresh(self) -> None:
        """The folder changed (another worker or `weedscan models` wrote it): rescan, and follow
        its active choice when it names a good model."""
        self.scan()
        with self._choosing:
            chosen = read_active(self.models_dir)
            if chosen is None or chosen == self.active:
                return
            try:
                self._switch(chosen)
                log.info("model %s is now the active model (the models folder says so)", chosen)
            except Exception as exc:  # noqa: BLE001 - the old model stays active
                log.error("error: the models folder names %s as active, but it cannot be served (%s); "
                          "%s stays active", chosen, exc, self.active)
