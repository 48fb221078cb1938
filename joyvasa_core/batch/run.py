"""Running a batch: every row checked first, then the good ones rendered with models loaded
once (here or on Ray), each result appended to ``results.jsonl`` as it is known, with progress.

One job's run (atomic output, its result) is :mod:`.worker`'s; :mod:`.ray_pool`
spreads the jobs over Ray actors.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import one_line
from ..job import ModelOptions
from .jobs import JobRow, batch_models, read_jobs
from .worker import INTERRUPTED, JobResult, ModelContext, execute, load_models, not_run

RESULTS_FILE = "results.jsonl"
#: Units of the progress bars by label.
_UNITS = {"frames": "frame", "motion": "window", "frames tracked": "frame"}


class _Progress:
    """A bar over the jobs, a bar over the frames of the current job, one line per result."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.jobs = tqdm(total=total, desc="jobs", unit="job", position=0, dynamic_ncols=True,
                         file=sys.stdout, disable=None)
        self._bar = None
        self._label = None

    def done(self, result: JobResult) -> None:
        note = f": {result.error}" if result.error else f" ({result.seconds:.1f} s)" \
            if result.status == "ok" else ""
        self._tqdm.write(f"row {result.row} {result.status} {result.output or '-'}{note}",
                         file=sys.stdout)
        self.jobs.update(1)

    # The JobLog of run_job: stage lines and progress callbacks.
    def stage(self, text: str) -> None:
        self.jobs.set_postfix_str(text[:60], refresh=True)

    def progress(self, label: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            if self._bar is None or self._label != label:
                self.close_bar()
                self._label = label
                self._bar = self._tqdm(total=total, desc=label, unit=_UNITS.get(label, "step"),
                                       position=1, leave=False, dynamic_ncols=True,
                                       file=sys.stdout, disable=None)
            self._bar.update(done - self._bar.n)
        return report

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self.close_bar()
        self.jobs.close()


def open_results(path: Path):
    """``results.jsonl`` opened for appending, a torn last line cut off first.

    Each result is one ``write`` of a whole line, so a killed run leaves whole
    lines; a full disk or a lost network mount can still leave a line without
    its end, which would glue itself to this run's first line.
    """
    if path.exists():
        with open(path, "r+b") as file:
            text = file.read()
            if text and not text.endswith(b"\n"):
                file.truncate(text.rfind(b"\n") + 1)
    return open(path, "a", encoding="utf-8")


def run_local(todo: list[JobRow], out_dir: Path, record: Callable[[JobResult], None],
              progress: _Progress, models: ModelOptions, model_context: ModelContext | None = None,
              debug: bool = False) -> None:
    """Load the models once, then render ``todo`` one after another in this process."""
    try:
        loaded = load_models(models, model_context)
    except Exception as exc:  # noqa: BLE001 - every job fails with the loader's line
        for row in todo:
            record(not_run(row, out_dir, "failed", one_line(exc)))
        return
    for row in todo:
        try:
            result = execute(loaded, row, out_dir, progress, debug)
        except KeyboardInterrupt:
            record(not_run(row, out_dir, "failed", INTERRUPTED, attempts=1))
            raise
        finally:
            progress.close_bar()
        record(result)


def run_batch(jobs_file: Path, out_dir: Path, defaults: list[str] | tuple[str, ...] = (), *,
              overwrite: bool = False, ray_address: str | None = None,
              cpus_per_actor: int | None = None, num_cpus: int | None = None,
              model_context: ModelContext | None = None) -> list[JobResult]:
    """Check every job of ``jobs_file``, then render the good ones; returns this run's results.

    defaults: headless options for every job (see :func:`read_jobs`);
    ray_address: None = in this process, else ``local`` / ``auto`` /
    ``ray://HOST:PORT``, with ``cpus_per_actor`` and ``num_cpus`` (see
    :mod:`joyvasa_core.batch.ray_pool`);
    model_context: see :data:`ModelContext`. Each result is appended to
    ``out_dir/results.jsonl`` as soon as it is known.
    """
    out_dir = Path(out_dir).resolve()
    models = batch_models(defaults)
    debug = "--debug" in defaults
    jobs = read_jobs(Path(jobs_file), out_dir, defaults, overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[JobResult] = []
    progress = _Progress(len(jobs))
    with open_results(out_dir / RESULTS_FILE) as log_file:
        def record(result: JobResult) -> None:
            log_file.write(result.to_json() + "\n")
            log_file.flush()
            results.append(result)
            progress.done(result)

        try:
            for job in jobs:
                if job.status:
                    record(not_run(job, out_dir, job.status, job.error))
            todo = [job for job in jobs if not job.status]
            if todo and ray_address is None:
                run_local(todo, out_dir, record, progress, models, model_context, debug)
            elif todo:
                from .ray_pool import run_on_ray

                run_on_ray(todo, out_dir, record, ray_address, models,
                           cpus_per_actor=cpus_per_actor, num_cpus=num_cpus,
                           model_context=model_context)
        finally:
            progress.close()
    return results
