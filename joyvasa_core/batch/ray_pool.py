"""Jobs spread over Ray actors that each hold the models (Ray is optional, imported lazily).

One actor per GPU of the cluster, or per ``cpus_per_actor`` cores on CPUs.
Each actor loads the models once, then takes one job at a time: the driver
hands the next job to whichever actor finishes first, and appends its result
to ``results.jsonl`` the moment it arrives. Actors read the inputs and write
the outputs themselves, through the same paths as the driver: on a cluster,
every node must see the jobs' folders at the same paths (a shared
filesystem: NFS, a mounted bucket, ...). A job whose actor dies under it
is tried once more on another actor (:class:`_Pool`). Ctrl-C kills the actors (their
current jobs stop mid-render), removes their ``.partial.mp4`` files, records
those jobs as ``failed: interrupted`` and shuts down a Ray instance the batch
started.
"""
from __future__ import annotations

import logging
import os
import re
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..errors import UsageError, one_line
from ..job import ModelOptions, QuietLog, partial_path
from .jobs import JobRow
from .worker import INTERRUPTED, JobResult, ModelContext, execute, load_models, not_run

DEFAULT_CPUS_PER_ACTOR = 4
#: A job whose actor dies under it is started once more, on another actor.
MAX_ATTEMPTS = 2
log = logging.getLogger(__name__)


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


def lost_error(exc: Exception, attempts: int) -> str:
    """The one line of a job whose actor died under it (Ray's own text is a paragraph)."""
    where = re.search(r"pid: (\d+).*?ip: (\S+)", str(exc), re.S)
    logs = f" of pid {where[1]} on {where[2]}" if where else ""
    times = "" if attempts == 1 else f" on all {attempts} attempts"
    return (f"worker lost: the Ray actor rendering it died{times} (killed, out of memory or its "
            f"node lost). Check the node's memory (dmesg) and the Ray logs{logs}")


class _Pool:
    """Actors that each hold the models, jobs handed to whichever is free, lost jobs retried.

    A job whose actor dies under it (killed, out of memory, its node lost) has
    its partial file removed and goes back to the front of the queue for one
    more attempt, which runs on another actor; a fresh actor replaces the lost
    one while jobs wait. A second loss records the job as ``failed`` (``worker
    lost``). An actor that dies while loading the models is not replaced, so
    every new actor follows a job's loss: at most ``MAX_ATTEMPTS`` per job.
    """

    def __init__(self, ray, worker, models: ModelOptions, model_context: ModelContext | None,
                 out_dir: Path, record: Callable[[JobResult], None]) -> None:
        self.ray, self.worker, self.out_dir, self.record = ray, worker, out_dir, record
        self.args = (models, model_context)
        self.actors: list = []           # every actor started (killed at the end)
        self.loading: dict = {}          # ready() ref -> actor
        self.running: dict = {}          # run() ref -> (actor, job, attempt)
        self.idle: deque = deque()
        self.queue: deque = deque()      # (job, attempt)
        self.load_error: str | None = None

    def start_actor(self) -> None:
        actor = self.worker.remote(*self.args)
        self.actors.append(actor)
        self.loading[actor.ready.remote()] = actor

    def run(self, todo: list[JobRow], count: int) -> None:
        """Start ``count`` actors and render ``todo``, recording each final result."""
        self.queue.extend((job, 1) for job in todo)
        for _ in range(count):
            self.start_actor()
        while self.running or (self.queue and self.loading):
            done, _ = self.ray.wait([*self.running, *self.loading], num_returns=1)
            if done[0] in self.loading:
                self._loaded(done[0])
            else:
                self._finished(done[0])
            while self.idle and self.queue:
                actor, (job, attempt) = self.idle.popleft(), self.queue.popleft()
                self.running[actor.run.remote(job, self.out_dir)] = (actor, job, attempt)
        error = self.load_error or "worker lost: no Ray actor left"
        while self.queue:                  # no actor left
            job, attempt = self.queue.popleft()
            self.record(not_run(job, self.out_dir, "failed", error, attempt - 1))

    def _loaded(self, ref) -> None:
        actor = self.loading.pop(ref)
        try:
            error = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            error = f"worker lost while loading the models: {one_line(exc)}"
        if error is None:
            self.idle.append(actor)
        else:
            self.load_error = error
            self.ray.kill(actor)

    def _finished(self, ref) -> None:
        actor, job, attempt = self.running.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:    # killed, out of memory, node lost
            self._lost(job, attempt, exc)
            return
        except self.ray.exceptions.RayError as exc:         # the task failed, the actor lives
            result = not_run(job, self.out_dir, "failed", one_line(exc), attempt)
        self.record(replace(result, attempts=attempt))
        self.idle.append(actor)

    def _lost(self, job: JobRow, attempt: int, exc: Exception) -> None:
        partial_path(job.output).unlink(missing_ok=True)
        error = lost_error(exc, attempt)
        if attempt >= MAX_ATTEMPTS:
            self.record(not_run(job, self.out_dir, "failed", error, attempt))
            return
        log.warning("row %d: %s; trying it again on another actor", job.row, error)
        self.queue.appendleft((job, attempt + 1))
        self.start_actor()

    def interrupted(self) -> None:
        """Ctrl-C: kill the actors (stopping their jobs mid-render), clean up, record."""
        for actor in self.actors:
            self.ray.kill(actor)
        for _, job, attempt in self.running.values():
            partial_path(job.output).unlink(missing_ok=True)
            self.record(not_run(job, self.out_dir, "failed", INTERRUPTED, attempt))
        self.running.clear()


def run_on_ray(todo: list[JobRow], out_dir: Path, record: Callable[[JobResult], None],
               address: str, models: ModelOptions, *, cpus_per_actor: int | None = None,
               num_cpus: int | None = None, model_context: ModelContext | None = None) -> None:
    """Render ``todo`` on Ray actors, calling ``record`` with each final result as it arrives."""
    ray = import_ray()
    started = connect(ray, address, num_cpus)
    pool = None
    try:
        count, options = _actor_options(ray, models.device, cpus_per_actor, len(todo))
        pool = _Pool(ray, ray.remote(_Worker).options(**options), models, model_context,
                     out_dir, record)
        pool.run(todo, count)
    except KeyboardInterrupt:
        if pool is not None:
            pool.interrupted()
        raise
    finally:
        for actor in pool.actors if pool is not None else ():
            ray.kill(actor)
        if started:
            ray.shutdown()
