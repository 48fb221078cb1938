"""Batches: many clips from one command, models loaded once, on one machine or on Ray.

    python -m joyvasa_core.batch jobs.csv --out-dir out --models-dir pretrained_weights

:mod:`.jobs` reads and checks the jobs file, :mod:`.run` renders the jobs
(atomic outputs, ``results.jsonl``, progress), :mod:`.ray_pool` spreads them
over Ray actors, :mod:`.command` is the command line.
"""
from .jobs import Job, JobsFileError, read_jobs
from .run import JobResult, run_batch

__all__ = ["Job", "JobResult", "JobsFileError", "read_jobs", "run_batch"]
