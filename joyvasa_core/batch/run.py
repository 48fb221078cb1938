"""Running checked jobs with models loaded once: atomic outputs, results.jsonl, progress.

Each job streams its MP4 to ``NAME.partial.mp4`` beside the final file and is
renamed with :func:`os.replace` only when complete, so a file under its final
name is always a whole video: a failure, Ctrl-C or a killed worker leaves at
most a ``.partial.mp4`` (removed when the process can still clean up, and
overwritten by the next run otherwise).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import cli
from .jobs import Job, read_jobs

if TYPE_CHECKING:
    from ..pipeline import JoyVASAModels

RESULTS_FILE = "results.jsonl"
INTERRUPTED = "interrupted"

ModelContext = Callable[[], AbstractContextManager]
"""A zero-argument callable returning a context manager entered around model loading,
in this process and in every Ray actor (it is pickled to them): the hook for custom
architectures. The tests pass ``helpers_pipeline.fast_liveportrait_build``."""


@dataclass
class JobResult:
    """One line of ``results.jsonl``.

    output: the MP4 path relative to the output folder (absolute if outside it);
    status: ``ok`` | ``failed`` | ``skipped``; error: the headless command's one
    line (without its ``error:`` prefix), None unless failed; seconds: wall time
    of the job (0 when it did not run); device: where it ran (None if it did not);
    host: the machine.
    """

    row: int
    output: str | None
    status: str
    error: str | None
    seconds: float
    device: str | None
    host: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def partial_path(output: Path) -> Path:
    """Where ``output`` streams until it is complete: ``NAME.partial.mp4`` in its folder."""
    return output.with_name(f"{output.stem}.partial{output.suffix or '.mp4'}")


def load_models(args: argparse.Namespace, model_context: ModelContext | None = None
                ) -> JoyVASAModels:
    """:func:`cli.load_models` inside ``model_context()`` (if given)."""
    with model_context() if model_context is not None else contextlib.nullcontext():
        return cli.load_models(args)


def render_atomically(models: JoyVASAModels, args: argparse.Namespace, log=None) -> Path:
    """Decode the inputs and render ``args.output`` via its partial name; returns the output.

    On any exception (Ctrl-C included) the partial file is removed and the
    final name is left as it was.
    """
    partial = partial_path(args.output)
    job_args = argparse.Namespace(**{**vars(args), "output": partial})
    try:
        cli.render_job(models, job_args, cli.read_inputs(job_args), log)
        os.replace(partial, args.output)
    finally:
        partial.unlink(missing_ok=True)
    return args.output


def _relative(output: Path | None, out_dir: Path) -> str | None:
    if output is None:
        return None
    try:
        return str(output.relative_to(out_dir))
    except ValueError:
        return str(output)


def execute(models: JoyVASAModels, job: Job, out_dir: Path, log=None) -> JobResult:
    """Run one checked job; a failure becomes a ``failed`` result (Ctrl-C propagates)."""
    start = time.perf_counter()
    error = None
    try:
        render_atomically(models, job.args, log)
    except Exception as exc:  # noqa: BLE001 - recorded; the batch goes on
        if job.args.debug:
            traceback.print_exc()
        error = cli._one_line(exc)  # noqa: SLF001 - the headless command's own line
    return JobResult(job.row, _relative(job.output, out_dir), "failed" if error else "ok", error,
                     round(time.perf_counter() - start, 3), str(models.device),
                     socket.gethostname())


def not_run(job: Job, out_dir: Path, status: str, error: str | None) -> JobResult:
    """The result of a job that did not render (skipped, refused, or never started)."""
    return JobResult(job.row, _relative(job.output, out_dir), status, error, 0.0, None,
                     socket.gethostname())


class QuietLog:
    """The ``log`` of :func:`cli.render_job` that prints nothing (Ray actors: the driver reports)."""

    def stage(self, text: str) -> None:
        pass

    def progress(self, label: str) -> None:
        return None


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

    # The ``log`` interface of cli.render_job: stage lines and progress callbacks.
    def stage(self, text: str) -> None:
        self.jobs.set_postfix_str(text[:60], refresh=True)

    def progress(self, label: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            if self._bar is None or self._label != label:
                self.close_bar()
                self._label = label
                self._bar = self._tqdm(total=total, desc=label, unit="frame" if label == "frames"
                                       else "step", position=1, leave=False, dynamic_ncols=True,
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


def run_local(todo: list[Job], out_dir: Path, record: Callable[[JobResult], None],
              progress: _Progress, model_context: ModelContext | None = None) -> None:
    """Load the models once, then render ``todo`` one after another in this process."""
    try:
        models = load_models(todo[0].args, model_context)
    except Exception as exc:  # noqa: BLE001 - every job fails with the loader's line
        for job in todo:
            record(not_run(job, out_dir, "failed", cli._one_line(exc)))  # noqa: SLF001
        return
    for job in todo:
        try:
            result = execute(models, job, out_dir, progress)
        except KeyboardInterrupt:
            record(not_run(job, out_dir, "failed", INTERRUPTED))
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
    jobs = read_jobs(Path(jobs_file), out_dir, defaults, overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[JobResult] = []
    progress = _Progress(len(jobs))
    with open(out_dir / RESULTS_FILE, "a", encoding="utf-8") as log_file:
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
                run_local(todo, out_dir, record, progress, model_context)
            elif todo:
                from .ray_pool import run_on_ray

                run_on_ray(todo, out_dir, record, ray_address, cpus_per_actor=cpus_per_actor,
                           num_cpus=num_cpus, model_context=model_context)
        finally:
            progress.close()
    return results
