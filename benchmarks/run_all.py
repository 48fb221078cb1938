"""Run the benchmark scripts one after another for one device and keep their output.

Each script runs in its own process (so peak-memory figures are its own) with a
time limit, in priority order: sampler, render, end-to-end, paste-back,
precision, streaming memory. Output goes to the console and to
``<out>/<name>.txt``; a script that fails or runs out of time is reported and
the next one runs.

    python benchmarks/run_all.py --device cuda --out bench-out     # the GPU numbers (~10 min)
    python benchmarks/run_all.py --device cpu --quick               # every script, tiny sizes
    python benchmarks/run_all.py --device cuda --only sampler render
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> arguments after the script path; full runs (for a GPU) and quick smoke runs.
FULL = {
    "sampler": ["sampler.py", "--ddim-steps", "10", "25", "50", "--windows", "3"],
    "render": ["render.py", "--batch-sizes", "1", "4", "8", "16", "32", "--frames", "96",
               "--cuda-graphs"],
    "render_1080p": ["render.py", "--dtypes", "fp16", "--batch-sizes", "1", "16", "--frames", "96",
                     "--photo-size", "1920x1080", "--cuda-graphs"],
    "end_to_end": ["end_to_end.py", "--seconds", "30", "--cuda-graphs"],
    "paste_back": ["paste_back.py", "--frames", "200"],
    "precision": ["precision.py", "--frames", "4"],
    "streaming": ["streaming_memory.py", "--full-size", "--minutes", "1", "10"],
}
QUICK = {
    "sampler": ["sampler.py", "--ddim-steps", "2", "--skip-ddpm"],
    "render": ["render.py", "--batch-sizes", "1", "2", "--frames", "2"],
    "render_1080p": ["render.py", "--batch-sizes", "2", "--frames", "2", "--photo-size", "1920x1080"],
    "end_to_end": ["end_to_end.py", "--seconds", "0.2", "--steps", "2"],
    "paste_back": ["paste_back.py", "--frames", "10", "--chunk", "5"],
    "precision": ["precision.py", "--frames", "1"],
    "streaming": ["streaming_memory.py", "--minutes", "0.05", "0.1"],
}


def run_one(name: str, argv: list[str], device: str, timeout: float, out_dir: Path) -> tuple[str, float]:
    """Run one script; returns (status, seconds). Its output is printed and saved."""
    cmd = [sys.executable, str(HERE / argv[0]), *argv[1:], "--device", device]
    print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        output, status = proc.stdout + proc.stderr, "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
        status = f"timed out after {timeout:g} s"
    seconds = time.perf_counter() - start
    print(output, end="" if output.endswith("\n") else "\n", flush=True)
    (out_dir / f"{name}.txt").write_text(f"$ {' '.join(cmd[1:])}\n{output}\n[{status}, {seconds:.0f} s]\n")
    return status, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check every script runs")
    parser.add_argument("--only", nargs="+", choices=list(FULL), help="run these only")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per script")
    args = parser.parse_args()

    suite = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    summary = []
    for name, argv in suite.items():
        if args.only and name not in args.only:
            continue
        status, seconds = run_one(name, argv, args.device, args.timeout, args.out)
        summary.append((name, status, seconds))
    print("\n=== summary")
    for name, status, seconds in summary:
        print(f"{name:14s} {status:24s} {seconds:7.0f} s")
    if any(status != "ok" for _, status, _ in summary):
        sys.exit(1)


if __name__ == "__main__":
    main()
