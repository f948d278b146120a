"""Run a batch on a Ray cluster: actors each hold the model and read the paths themselves, so
the paths must be visible to every node (a shared or network file system)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Generator, Sequence
from typing import Any

from serving.batch.work import BatchJob, ImageWorker, Record


class RayUnavailable(RuntimeError):
    pass


def import_ray() -> Any:
    try:
        import ray  # optional: pip install 'weedscan[ray]'
    except ImportError as exc:
        raise RayUnavailable("--ray needs Ray: pip install 'weedscan[ray]'") from exc
    return ray


def run_ray(paths: Sequence[str], job: BatchJob, address: str,
            workers: int | None = None) -> Generator[Record, None, None]:
    """Records in completion order. `address` is a Ray address ("auto", "ray://host:10001")
    or "local" for a Ray instance on this machine; a Ray already initialised is used as is."""
    ray = import_ray()
    if not paths:
        return
    from ray.util import ActorPool

    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        if address == "local":
            ray.init(num_cpus=workers, include_dashboard=False, **options)
        else:
            ray.init(address=address, **options)
    actors: list[Any] = []
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        count = min(workers or cpus, cpus)  # actors beyond the CPUs would wait for ever
        # One CPU and one inference thread per actor: Ray packs actors on the cores.
        actor_class = ray.remote(num_cpus=1)(ImageWorker)
        job = dataclasses.replace(job, threads=1)
        actors = [actor_class.remote(job) for _ in range(min(count, len(paths)))]
        chunk = max(1, min(16, len(paths) // (len(actors) * 4)))
        chunks = [list(paths[i:i + chunk]) for i in range(0, len(paths), chunk)]
        pool = ActorPool(actors)
        for records in pool.map_unordered(lambda actor, c: actor.process_many.remote(c), chunks):
            yield from records
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
