"""The batch command line.

    python -m joyvasa_core.batch JOBS --out-dir DIR [--ray ADDRESS] [--overwrite]
                                 [any headless option, for every job: --models-dir, --device, ...]

Exit status 0 when no job failed, 1 otherwise (a job whose Ray actor died on
both attempts counts as failed; also when the jobs file cannot be read, with
one ``error:`` line), 130 on Ctrl-C.
"""
from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from ..errors import EXIT_ERROR, EXIT_INTERRUPTED, UsageError, report
from .jobs import batch_models
from .ray_pool import import_ray


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m joyvasa_core.batch",
        description="Render every job of a jobs file (CSV with a header row, or JSONL) with the "
                    "models loaded once, here or on a Ray cluster.",
        epilog="Any other option is an option of python -m joyvasa_core applied to every job "
               "(--models-dir, --device, --precision, --sampler, --steps, ...); a job's own "
               "columns override it. Results: OUT_DIR/results.jsonl.")
    p.add_argument("jobs", type=Path, metavar="JOBS",
                   help="jobs file: columns image, audio, output (relative to --out-dir) and "
                        "any headless option by its name (seed, cfg_scale, ...)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder of the outputs")
    p.add_argument("--overwrite", action="store_true",
                   help="render jobs whose output exists (default: skip them)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run on Ray: 'local' starts a local instance, 'auto' or "
                        "ray://HOST:PORT joins a cluster (needs requirements-ray.txt)")
    p.add_argument("--cpus-per-actor", type=int, metavar="N",
                   help="with --ray on CPUs: cores per model-holding actor "
                        "(default 4; one actor per GPU when the cluster has GPUs)")
    p.add_argument("--num-cpus", type=int, metavar="N",
                   help="with --ray local: cores of the local instance (default: all)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    from .run import run_batch

    args, defaults = build_parser().parse_known_args(argv)
    debug = "--debug" in defaults
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        stream=sys.stdout, format="%(levelname)s: %(message)s")
    try:
        batch_models(defaults)
        if args.ray is not None:
            import_ray()
        if args.cpus_per_actor is not None and args.cpus_per_actor < 1:
            raise UsageError(f"--cpus-per-actor must be >= 1, got {args.cpus_per_actor}")
        if args.num_cpus is not None and args.num_cpus < 1:
            raise UsageError(f"--num-cpus must be >= 1, got {args.num_cpus}")
        results = run_batch(args.jobs, args.out_dir, defaults, overwrite=args.overwrite,
                            ray_address=args.ray, cpus_per_actor=args.cpus_per_actor,
                            num_cpus=args.num_cpus)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the batch as a whole could not run
        if debug:
            traceback.print_exc()
        print(f"error: {report(exc)}", file=sys.stderr)
        return EXIT_ERROR
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed")}
    print(f"{counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed; "
          f"results in {args.out_dir / 'results.jsonl'}")
    return EXIT_ERROR if counts["failed"] else 0
