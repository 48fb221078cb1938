"""One job of a batch, where it runs (this process or a Ray actor): atomic output, one result.

Each job streams its MP4 to ``NAME.partial.mp4`` beside the final file and is
renamed with :func:`os.replace` only when complete, so a file under its final
name is always a whole video: a failure, Ctrl-C or a killed worker leaves at
most a ``.partial.mp4`` (removed when the process can still clean up, and
overwritten by the next run otherwise).
"""
from __future__ import annotations

import contextlib
import json
import socket
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import one_line
from ..job import Job, JobLog, ModelOptions, read_inputs, run_job_atomically
from .jobs import JobRow

if TYPE_CHECKING:
    from ..pipeline import JoyVASAModels

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
    host: the machine; attempts: how many times it was started (0 when it did not
    run; 2 when a Ray actor died under it and it was tried again on another one).
    """

    row: int
    output: str | None
    status: str
    error: str | None
    seconds: float
    device: str | None
    host: str
    attempts: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def load_models(models: ModelOptions, model_context: ModelContext | None = None
                ) -> "JoyVASAModels":
    """``models.load()`` inside ``model_context()`` (if given)."""
    with model_context() if model_context is not None else contextlib.nullcontext():
        return models.load()


def render_atomically(models: "JoyVASAModels", job: Job, log: JobLog | None = None) -> Path:
    """Decode the inputs and render the job's video via its partial name
    (:func:`~joyvasa_core.job.run_job_atomically`); returns the output."""
    return run_job_atomically(models, job, read_inputs(job, models.models_dir), log)


def _relative(output: Path | None, out_dir: Path) -> str | None:
    if output is None:
        return None
    try:
        return str(output.relative_to(out_dir))
    except ValueError:
        return str(output)


def execute(models: "JoyVASAModels", row: JobRow, out_dir: Path, log: JobLog | None = None,
            debug: bool = False) -> JobResult:
    """Run one checked job; a failure becomes a ``failed`` result (Ctrl-C propagates)."""
    start = time.perf_counter()
    error = None
    try:
        render_atomically(models, row.job, log)
    except Exception as exc:  # noqa: BLE001 - recorded; the batch goes on
        if debug:
            traceback.print_exc()
        error = one_line(exc)
    return JobResult(row.row, _relative(row.output, out_dir), "failed" if error else "ok", error,
                     round(time.perf_counter() - start, 3), str(models.device),
                     socket.gethostname())


def not_run(row: JobRow, out_dir: Path, status: str, error: str | None,
            attempts: int = 0) -> JobResult:
    """The result of a job that did not finish (skipped, refused, never started, or
    stopped: ``attempts`` is then how many times it was started)."""
    return JobResult(row.row, _relative(row.output, out_dir), status, error, 0.0, None,
                     socket.gethostname(), attempts)
