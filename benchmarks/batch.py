"""Jobs per hour: N small clips in one batch command vs a loop of the headless command.

    python benchmarks/batch.py [--jobs 8] [--seconds 1] [--device cpu] [--ray]
                               [--models-dir pretrained_weights]

Both sides run as fresh processes and are timed from launch to exit, so both
pay Python start-up, imports and model loading; the loop pays them once per
clip (as a shell loop over ``python -m joyvasa_core`` would), the batch once
in all. Every job renders the astronaut photo (256 x 256) with its own seed
and ``--seconds`` of speech (espeak-ng if installed, else a speech-like
signal), with the fast sampler (DDIM, 2 steps).

Default: the tiny configuration of the real networks (``tests/helpers_pipeline.py``)
on the CPU, where model loading is cheap, so the gap shown is mostly start-up and
imports; with ``--models-dir`` (the official tree) the full-size networks load
for every clip of the loop, and the gap grows by their loading time per clip.
``--ray`` adds the batch on a local Ray instance (all cores, 1 core per actor).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, print_table

FAST = ["--sampler", "ddim", "--steps", "2", "--face-backend", "none"]


def _child(mode: str, tiny: bool, argv: list[str]) -> int:
    """Run one side in this process, with the tiny networks when ``tiny``."""
    import helpers_pipeline as hp

    context = hp.fast_liveportrait_build if tiny else contextlib.nullcontext
    if mode == "headless":
        from joyvasa_core import cli

        with context():
            return cli.main(argv)
    from joyvasa_core.batch import run_batch

    jobs, out, ray, *defaults = argv
    results = run_batch(Path(jobs), Path(out), defaults, ray_address=ray or None,
                        cpus_per_actor=1, model_context=hp.fast_liveportrait_build if tiny else None)
    return int(any(r.status != "ok" for r in results))


def _inputs(folder: Path, seconds: float) -> tuple[Path, Path]:
    import numpy as np
    import skimage.data
    from PIL import Image

    import helpers_cli

    photo = folder / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()[::2, ::2]).save(photo)
    speech = folder / "speech.wav"
    if shutil.which("espeak-ng"):
        words = " ".join(["Hello there, this is a test."] * max(1, round(seconds / 2)))
        subprocess.run(["espeak-ng", "-w", str(speech), words], check=True, capture_output=True)
    else:
        helpers_cli.write_wav(speech, (helpers_cli.hp.speech_like(seconds) * 32767)
                              .astype(np.int16))
    return photo, speech


def _timed(*commands: list[str]) -> float:
    """Wall-clock seconds of running ``commands`` one after another."""
    # Ray actors import the test helpers (tiny networks) too.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    for argv in commands:
        # stderr holds the headless command's progress lines: shown only when a run fails
        proc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=env, check=False)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8, help="number of clips")
    parser.add_argument("--seconds", type=float, default=1.0, help="speech per clip (s)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models-dir", type=Path,
                        help="official pretrained_weights tree (default: tiny networks)")
    parser.add_argument("--ray", action="store_true", help="also time --ray local")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, tiny, *rest = args.child
        sys.exit(_child(mode, tiny == "tiny", rest))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tiny = args.models_dir is None
        if tiny:
            import helpers_pipeline as hp

            models_dir = hp.write_fast_pretrained_weights(folder / "pretrained_weights")
        else:
            models_dir = args.models_dir.resolve()
        photo, speech = _inputs(folder, args.seconds)
        jobs = folder / "jobs.csv"
        jobs.write_text("image,audio,output,seed\n" + "".join(
            f"{photo},{speech},clip{i}.mp4,{i}\n" for i in range(args.jobs)))
        common = ["--models-dir", str(models_dir), "--device", args.device, *FAST]
        child = [sys.executable, str(Path(__file__).resolve()), "--child"]
        flag = "tiny" if tiny else "full"

        runs = [("loop of python -m joyvasa_core", _timed(*(
            [*child, "headless", flag, "--image", str(photo), "--audio", str(speech),
             "--output", str(folder / f"loop/clip{i}.mp4"), "--seed", str(i), *common]
            for i in range(args.jobs))))]
        runs.append(("python -m joyvasa_core.batch", _timed(
            [*child, "batch", flag, str(jobs), str(folder / "batch"), "", *common])))
        if args.ray:
            runs.append(("python -m joyvasa_core.batch --ray local", _timed(
                [*child, "batch", flag, str(jobs), str(folder / "ray"), "local", *common])))

    loop = runs[0][1]
    print(f"{args.jobs} jobs of {args.seconds:g} s speech, {'tiny' if tiny else 'full-size'} "
          f"networks, device {args.device}")
    print_table(["command", "seconds", "jobs per hour", "speed-up"],
                [(name, s, args.jobs / s * 3600, loop / s) for name, s in runs])


if __name__ == "__main__":
    main()
