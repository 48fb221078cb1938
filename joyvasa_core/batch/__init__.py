"""Batches: many clips from one command, models loaded once, on one machine or on Ray.

    python -m joyvasa_core.batch jobs.csv --out-dir out --models-dir pretrained_weights

:mod:`.jobs` reads and checks the jobs file (a :class:`~joyvasa_core.job.Job` per
row), :mod:`.worker` runs one job (atomic output, its result), :mod:`.run`
runs the batch (``results.jsonl``, progress), :mod:`.ray_pool` spreads the
jobs over Ray actors, :mod:`.command` is the command line.
"""
from .jobs import JobRow, JobsFileError, read_jobs
from .run import run_batch
from .worker import JobResult

__all__ = ["JobRow", "JobResult", "JobsFileError", "read_jobs", "run_batch"]
