"""Jobs spread over Ray actors that each hold the models (Ray is optional, imported lazily).

One actor per GPU of the cluster, or per ``cpus_per_actor`` cores on CPUs.
Each actor loads the models once, then takes one job at a time: the driver
hands the next job to whichever actor finishes first, and appends its result
to ``results.jsonl`` the moment it arrives. Actors read the inputs and write
the outputs themselves, through the same paths as the driver: on a cluster,
every node must see the jobs' folders at the same paths (a shared
filesystem: NFS, a mounted bucket, ...). Ctrl-C kills the actors (their
current jobs stop mid-render), removes their ``.partial.mp4`` files, records
those jobs as ``failed: interrupted`` and shuts down a Ray instance the batch
started.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..errors import UsageError, one_line
from ..job import ModelOptions, QuietLog
from .jobs import JobRow
from .worker import (INTERRUPTED, JobResult, ModelContext, execute, load_models, not_run,
                     partial_path)

DEFAULT_CPUS_PER_ACTOR = 4


def import_ray():
    """The ``ray`` module, or a one-line error naming the fix."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray, which is not installed: "
                             "pip install -r requirements-ray.txt") from None
    return ray


def connect(ray, address: str, num_cpus: int | None = None) -> bool:
    """Start (``local``) or join (``auto``, ``ray://HOST:PORT``) Ray; True if this call did.

    A session the caller already opened (``ray.init`` in a notebook or a
    test) is used as it is. The workers import this package: a local
    instance gets its folder on ``PYTHONPATH``; a cluster gets a copy of the
    package through the runtime environment (torch and the other
    requirements must be installed on its nodes).
    """
    if ray.is_initialized():
        return False
    package = Path(__file__).resolve().parents[1]
    try:
        if address == "local":
            path = os.pathsep.join(p for p in (str(package.parent), os.environ.get("PYTHONPATH"))
                                   if p)
            ray.init(num_cpus=num_cpus, include_dashboard=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
        else:
            ray.init(address=address, runtime_env={"py_modules": [str(package)]})
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"cannot start or join Ray at --ray {address}: "
                             f"{' '.join(str(exc).split())}. Check the address (local, auto or "
                             "ray://HOST:PORT) and that the cluster runs Ray "
                             f"{ray.__version__}") from None
    return True


class _Worker:
    """A Ray actor body: the models of one device, and one job at a time."""

    def __init__(self, models: ModelOptions, model_context: ModelContext | None) -> None:
        try:
            self.models, self.error = load_models(models, model_context), None
        except Exception as exc:  # noqa: BLE001 - reported by ready(), not as a dead actor
            self.models, self.error = None, one_line(exc)

    def ready(self) -> str | None:
        """None when the models loaded, else the loader's one-line error."""
        return self.error

    def run(self, row: JobRow, out_dir: Path) -> JobResult:
        return execute(self.models, row, out_dir, QuietLog())


def _actor_options(ray, device: str, cpus_per_actor: int | None, jobs: int) -> tuple[int, dict]:
    """(number of actors, their resource options): one per GPU, else per N CPU cores."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus and device != "cpu":
        return min(gpus, jobs), {"num_gpus": 1, "num_cpus": 1}
    cpus = max(1, int(resources.get("CPU", 1)))
    per_actor = min(cpus_per_actor or DEFAULT_CPUS_PER_ACTOR, cpus)
    return min(max(1, cpus // per_actor), jobs), {"num_cpus": per_actor}


def run_on_ray(todo: list[JobRow], out_dir: Path, record: Callable[[JobResult], None],
               address: str, models: ModelOptions, *, cpus_per_actor: int | None = None, num_cpus: int | None = None,
               model_context: ModelContext | None = None) -> None:
    """Render ``todo`` on Ray actors, calling ``record`` with each result as it arrives."""
    ray = import_ray()
    started = connect(ray, address, num_cpus)
    actors: list = []
    inflight: dict = {}          # object ref -> (actor, job)
    queue = deque(todo)
    try:
        count, options = _actor_options(ray, models.device, cpus_per_actor, len(todo))
        worker = ray.remote(_Worker).options(**options)
        actors = [worker.remote(models, model_context) for _ in range(count)]
        errors = ray.get([actor.ready.remote() for actor in actors])
        healthy = [actor for actor, error in zip(actors, errors) if error is None]
        if not healthy:
            while queue:
                record(not_run(queue.popleft(), out_dir, "failed", errors[0]))
            return

        def submit(actor) -> None:
            if queue:
                job = queue.popleft()
                inflight[actor.run.remote(job, out_dir)] = (actor, job)

        for actor in healthy:
            submit(actor)
        while inflight:
            done, _ = ray.wait(list(inflight), num_returns=1)
            actor, job = inflight.pop(done[0])
            try:
                record(ray.get(done[0]))
            except ray.exceptions.RayError as exc:      # the actor died (memory, lost node)
                partial_path(job.output).unlink(missing_ok=True)
                record(not_run(job, out_dir, "failed", f"worker lost: {one_line(exc)}"))  # noqa: SLF001
                continue
            submit(actor)
        while queue:                                     # every actor died
            record(not_run(queue.popleft(), out_dir, "failed", "worker lost: no Ray actor left"))
    except KeyboardInterrupt:
        for actor in actors:             # stops the jobs mid-render
            ray.kill(actor)
        for _, job in inflight.values():
            partial_path(job.output).unlink(missing_ok=True)
            record(not_run(job, out_dir, "failed", INTERRUPTED))
        raise
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
