"""``python -m joyvasa_core.batch``: checked rows, atomic outputs, results.jsonl, reruns, Ray.

Real inputs: skimage's astronaut, a flat grey image (no face: the failing
job) and espeak-ng speech; the official-format model tree with the fast tiny
networks (``helpers_pipeline``). The local path runs in this process inside
``fast_liveportrait_build()``; Ray actors get the same build through
``run_batch(model_context=...)`` (the helper modules reach them on PYTHONPATH).
All Ray tests share one local Ray session with 2 CPUs.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import helpers_pipeline as hp
from helpers_cli import FAST, error_line
from helpers_cli import run as run_cli
from joyvasa_core import video
from joyvasa_core.batch import command, read_jobs, run_batch
from joyvasa_core.batch.run import RESULTS_FILE
from joyvasa_core.job import partial_path
from joyvasa_core.errors import one_line
from joyvasa_core.face import mtcnn

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
pytestmark = [
    pytest.mark.skipif(shutil.which("espeak-ng") is None,
                       reason="espeak-ng not installed (apt-get install -y espeak-ng)"),
    pytest.mark.skipif(not mtcnn.available(), reason="mtcnn (the no-download detector) missing"),
    pytest.mark.usefixtures("offline"),
]
JOBS = """image,audio,output,seed,face_backend,no_stitching
astronaut.png,hello.wav,clips/one.mp4,1,mtcnn,false
astronaut.png,hello.wav,two.mp4,2,none,true
grey.png,hello.wav,grey.mp4,3,mtcnn,
"""
OK_OUTPUTS = ("clips/one.mp4", "two.mp4")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Folder with astronaut.png (256 x 256), grey.png (no face), hello.wav (espeak-ng), jobs.csv."""
    import skimage.data

    folder = tmp_path_factory.mktemp("inputs")
    Image.fromarray(skimage.data.astronaut()[::2, ::2]).save(folder / "astronaut.png")
    Image.fromarray(np.full((160, 200, 3), 128, np.uint8)).save(folder / "grey.png")
    subprocess.run(["espeak-ng", "-w", str(folder / "hello.wav"), "Hi there."], check=True,
                   capture_output=True)
    (folder / "jobs.csv").write_text(JOBS)
    return folder


def _defaults(models_dir: Path) -> list[str]:
    return ["--models-dir", str(models_dir), *FAST]


def _results(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / RESULTS_FILE).read_text().splitlines()]


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _leftovers(out_dir: Path) -> list[Path]:
    return sorted(out_dir.rglob("*.partial.mp4"))


@pytest.fixture(scope="module")
def local_run(inputs, models_dir, tmp_path_factory) -> tuple[Path, int, str]:
    """The batch command run once in this process: (out dir, exit status).

    One torch thread, as in a Ray actor of 1 CPU: on CPU the thread count
    changes float rounding (~1e-7 in the motion), and H.264 turns that into
    different bytes in the tiny networks' noise-like faces.
    """
    out = tmp_path_factory.mktemp("local")
    argv = [str(inputs / "jobs.csv"), "--out-dir", str(out), *_defaults(models_dir)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with hp.fast_liveportrait_build():
            code = command.main(argv)
    finally:
        torch.set_num_threads(threads)
    return out, code


# ---------------------------------------------------------------------------- checking rows

def test_rows_are_checked_alone_with_their_numbers(tmp_path, inputs):
    jobs = tmp_path / "jobs.jsonl"
    rows = [
        {"image": str(inputs / "astronaut.png"), "audio": str(inputs / "hello.wav"),
         "output": "a.mp4", "cfg-scale": 2.5, "no_stitching": True, "steps": None,
         "--pose-scale": "-0.5"},
        {"image": "nowhere.png", "audio": str(inputs / "hello.wav"), "output": "b.mp4"},
        {"image": str(inputs / "astronaut.png"), "audio": str(inputs / "hello.wav"),
         "output": "c.mp4", "cfg_scale": -1},
        {"image": str(inputs / "astronaut.png"), "audio": str(inputs / "hello.wav"),
         "output": "d.mp4", "colour": "blue"},
        {"image": str(inputs / "astronaut.png"), "audio": str(inputs / "hello.wav"),
         "output": "e.mp4", "device": "cpu"},
        {"image": str(inputs / "astronaut.png"), "audio": str(inputs / "grey.png"),
         "output": "f.mp4"},
        {"image": str(inputs / "astronaut.png"), "audio": str(inputs / "hello.wav"),
         "output": "a.mp4"},
    ]
    jobs.write_text("\n".join(json.dumps(r) for r in rows) + "\n\nnot json\n")
    checked = read_jobs(jobs, tmp_path / "out", ["--seed", "7"])
    assert [j.row for j in checked] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [j.status for j in checked] == ["", *["failed"] * 7]
    good = checked[0].job
    assert (good.motion.cfg_scale, good.driving.flag_stitching, good.motion.seed,
            good.motion.steps, good.motion.pose_scale) == (2.5, False, 7, None, -0.5)
    assert good.outputs.video == (tmp_path / "out" / "a.mp4").resolve()
    assert checked[0].output == good.outputs.video
    for job, words in zip(checked[1:], (["nowhere.png", "not found"], ["--cfg-scale", ">= 0"],
                                        ["unknown column 'colour'"], ["--device", "batch command"],
                                        ["grey.png"], ["a.mp4", "row 1"], ["not valid JSON"])):
        print(f"row {job.row}: {job.error}")
        assert all(w in job.error for w in words), job.error
    # a relative input path resolves against the jobs file's folder
    assert str(tmp_path / "nowhere.png") in checked[1].error


def test_flags_and_relative_paths_in_csv(tmp_path, inputs):
    out = tmp_path / "out"
    checked = read_jobs(inputs / "jobs.csv", out)
    assert [j.status for j in checked] == ["", "", ""]
    one, two, grey = (j.job for j in checked)
    assert one.source.image == inputs / "astronaut.png" and one.speech == inputs / "hello.wav"
    assert one.outputs.video == out.resolve() / "clips" / "one.mp4"
    assert (one.driving.flag_stitching, two.driving.flag_stitching,
            grey.driving.flag_stitching) == (True, False, True)
    assert (one.motion.seed, two.source.face_backend) == (1, "none")


def test_batch_wide_options_are_checked_first(tmp_path, inputs, capsys):
    code = command.main([str(inputs / "jobs.csv"), "--out-dir", str(tmp_path),
                         "--image", "x.png"])
    assert "--image differs for each job" in error_line(code, capsys.readouterr().err)
    code = command.main([str(tmp_path / "none.csv"), "--out-dir", str(tmp_path)])
    assert "none.csv not found" in error_line(code, capsys.readouterr().err)
    assert not (tmp_path / RESULTS_FILE).exists()


def test_ray_missing_is_a_clear_error(tmp_path, inputs, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)         # import ray -> ImportError
    code = command.main([str(inputs / "jobs.csv"), "--out-dir", str(tmp_path), "--ray", "local"])
    assert "requirements-ray.txt" in error_line(code, capsys.readouterr().err)


# ---------------------------------------------------------------------------- the local path

def test_local_run_records_every_job(local_run, inputs, models_dir, tmp_path, capsys):
    out, code = local_run
    assert code == 1                                  # the grey photo failed
    results = {r["output"]: r for r in _results(out)}
    assert sorted(results) == sorted([*OK_OUTPUTS, "grey.mp4"])
    for name in OK_OUTPUTS:
        assert results[name]["status"] == "ok" and results[name]["error"] is None
        assert results[name]["device"] == "cpu" and results[name]["seconds"] > 0
        assert len(_frames(out / name)) > 10
    assert not (out / "grey.mp4").exists() and _leftovers(out) == []
    # The failed job's error is the headless command's own error line.
    with hp.fast_liveportrait_build():
        status, _, err = run_cli(["--image", inputs / "grey.png", "--audio", inputs / "hello.wav",
                                  "--output", tmp_path / "g.mp4", "--seed", "3",
                                  "--face-backend", "mtcnn", "--models-dir", models_dir, *FAST],
                                 capsys)
    assert results["grey.mp4"]["status"] == "failed"
    assert error_line(status, err) == f"error: {results['grey.mp4']['error']}"
    # Different seeds and settings: different clips.
    one, two = _frames(out / OK_OUTPUTS[0]), _frames(out / OK_OUTPUTS[1])
    assert one.shape == two.shape and np.abs(one.astype(int) - two).mean() > 1


def test_rerun_skips_and_does_not_rewrite(local_run, inputs, models_dir):
    out, _ = local_run
    before = {name: (out / name).stat().st_mtime_ns for name in OK_OUTPUTS}
    lines = len(_results(out))
    with hp.fast_liveportrait_build():
        code = command.main([str(inputs / "jobs.csv"), "--out-dir", str(out),
                             *_defaults(models_dir)])
    assert code == 1                                  # the grey photo fails again
    rerun = _results(out)[lines:]                     # appended: one line per job per run
    assert {r["output"]: r["status"] for r in rerun} == {
        "clips/one.mp4": "skipped", "two.mp4": "skipped", "grey.mp4": "failed"}
    assert {name: (out / name).stat().st_mtime_ns for name in OK_OUTPUTS} == before
    assert [j.status for j in read_jobs(inputs / "jobs.csv", out, overwrite=True)] == ["", "", ""]


@pytest.mark.parametrize("failure", [OSError, KeyboardInterrupt])
def test_half_finished_output_never_has_its_final_name(failure, tmp_path, inputs, models_dir,
                                                       monkeypatch):
    """Mid-render (frames already streamed to disk) the job dies: no file under the final name."""
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"image,audio,output,batch_size\n{inputs / 'astronaut.png'},"
                    f"{inputs / 'hello.wav'},half.mp4,2\n")
    out = tmp_path / "out"
    final = out / "half.mp4"
    write = video.VideoWriter.write
    seen = []

    def failing_write(self, frames):
        write(self, frames)
        if self.frames_written >= 4:
            seen.append((self.path, self.path.stat().st_size, final.exists()))
            raise failure("disk full")

    monkeypatch.setattr(video.VideoWriter, "write", failing_write)
    with hp.fast_liveportrait_build():
        if failure is KeyboardInterrupt:
            with pytest.raises(KeyboardInterrupt):
                run_batch(jobs, out, _defaults(models_dir))
        else:
            run_batch(jobs, out, _defaults(models_dir))
    assert seen == [(partial_path(final), seen[0][1], False)] and seen[0][1] > 0
    assert not final.exists() and _leftovers(out) == []
    [result] = _results(out)
    assert result["status"] == "failed"
    assert result["error"] == ("interrupted" if failure is KeyboardInterrupt
                               else one_line(OSError("disk full")))


# ---------------------------------------------------------------------------- Ray

@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance with 2 CPUs for the module; workers import the test helpers."""
    ray = pytest.importorskip("ray")
    path = os.pathsep.join([str(ROOT), str(TESTS)])
    ray.init(num_cpus=2, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}})
    yield ray
    ray.shutdown()


def test_ray_gives_the_local_frames(ray_session, local_run, inputs, models_dir, tmp_path):
    out = tmp_path / "ray"
    results = run_batch(inputs / "jobs.csv", out, _defaults(models_dir), ray_address="local",
                        cpus_per_actor=1, model_context=hp.fast_liveportrait_build)
    by_output = {r.output: r for r in results}
    assert {k: r.status for k, r in by_output.items()} == {
        "clips/one.mp4": "ok", "two.mp4": "ok", "grey.mp4": "failed"}
    local = {r["output"]: r for r in _results(local_run[0])}
    assert by_output["grey.mp4"].error == local["grey.mp4"]["error"]
    for name in OK_OUTPUTS:
        np.testing.assert_array_equal(_frames(out / name), _frames(local_run[0] / name))
    assert len(_results(out)) == 3 and _leftovers(out) == []


def test_ray_ctrl_c_leaves_no_half_written_output(ray_session, inputs, models_dir, tmp_path,
                                                  monkeypatch):
    """Ctrl-C while an actor streams frames: actors killed, partial files gone, jobs recorded."""
    from joyvasa_core.batch import ray_pool

    out = tmp_path / "ray"
    wait = ray_session.wait

    def interrupted_wait(refs, **kwargs):
        done, pending = wait(refs, timeout=0.05, **kwargs)
        while not done:
            if _leftovers(out):                       # a job is streaming frames
                raise KeyboardInterrupt
            done, pending = wait(refs, timeout=0.05, **kwargs)
        return done, pending

    monkeypatch.setattr(ray_pool.import_ray(), "wait", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        run_batch(inputs / "jobs.csv", out, _defaults(models_dir), ray_address="local",
                  cpus_per_actor=1, model_context=hp.fast_liveportrait_build)
    assert _leftovers(out) == []
    results = _results(out)
    interrupted = [r["output"] for r in results if r["error"] == "interrupted"]
    assert interrupted and all(not (out / name).exists() for name in interrupted)
    finished = [r["output"] for r in results if r["status"] == "ok"]      # before the Ctrl-C
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mp4")) == sorted(finished)
    assert len(results) == len(interrupted) + len(finished)


# ---------------------------------------------------------------------------- killed workers

def _holders(path: Path) -> set[int]:
    """Ids of the processes that have ``path`` open (Linux: /proc/PID/fd)."""
    pids = set()
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == str(path):
                pids.add(int(fd.parts[2]))
        except OSError:                               # gone meanwhile, or not ours
            continue
    return pids


class _Killer:
    """A thread that SIGKILLs whichever process streams a job's partial file, ``kills[output]``
    times per output: an actor killed mid-render, as by the out-of-memory killer."""

    def __init__(self, out: Path, kills: dict[str, int]) -> None:
        import threading

        self.out, self.left, self.killed = out, dict(kills), []    # killed: (output, pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.02) and any(self.left.values()):
            for output, left in self.left.items():
                partial = partial_path(self.out / output)
                if not left or not partial.exists() or partial.stat().st_size == 0:
                    continue
                for pid in _holders(partial) - {pid for _, pid in self.killed}:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append((output, pid))
                    self.left[output] -= 1

    def __enter__(self) -> "_Killer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


#: ``python -m joyvasa_core.batch ARGS`` with the tiny networks (the test helpers on PYTHONPATH).
BATCH_WITH_TINY_NETWORKS = """
import runpy, helpers_pipeline as hp
with hp.fast_liveportrait_build():
    runpy.run_module("joyvasa_core.batch", run_name="__main__", alter_sys=True)
"""


def _absolute_jobs(inputs: Path, folder: Path, rows: int) -> Path:
    """The first ``rows`` rows of JOBS, with absolute input paths, in ``folder``."""
    jobs = folder / "jobs.csv"
    jobs.write_text("\n".join(JOBS.replace("astronaut.png", str(inputs / "astronaut.png"))
                              .replace("hello.wav", str(inputs / "hello.wav"))
                              .splitlines()[:rows + 1]) + "\n")
    return jobs


def test_local_batch_killed_mid_job_resumes(local_run, inputs, models_dir, tmp_path):
    """SIGKILL the command while it streams its second clip; the rerun redoes only that one."""
    jobs, out = _absolute_jobs(inputs, tmp_path, 2), tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}      # one thread, as local_run
    proc = subprocess.Popen([sys.executable, "-c", BATCH_WITH_TINY_NETWORKS, str(jobs),
                             "--out-dir", str(out), *_defaults(models_dir)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    streaming = partial_path(out / "two.mp4")
    try:
        while proc.poll() is None and not (streaming.exists() and streaming.stat().st_size):
            time.sleep(0.02)
    finally:
        proc.kill()                                                  # SIGKILL
    print(proc.communicate()[0].decode())
    assert proc.returncode == -signal.SIGKILL, "the batch ended before it was killed"
    assert [(r["output"], r["status"]) for r in _results(out)] == [("clips/one.mp4", "ok")]
    assert streaming.stat().st_size > 0 and not (out / "two.mp4").exists()
    done = (out / "clips/one.mp4").stat().st_mtime_ns
    with open(out / RESULTS_FILE, "a") as torn:                     # a line cut short (disk full)
        torn.write('{"row": 2, "output": "two.m')

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with hp.fast_liveportrait_build():
            code = command.main([str(jobs), "--out-dir", str(out), *_defaults(models_dir)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    assert [(r["row"], r["status"]) for r in _results(out)] == [(1, "ok"), (1, "skipped"),
                                                                (2, "ok")]
    assert (out / "clips/one.mp4").stat().st_mtime_ns == done       # not redone
    np.testing.assert_array_equal(_frames(out / "two.mp4"), _frames(local_run[0] / "two.mp4"))
    assert _leftovers(out) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds writers through /proc")
def test_ray_actor_killed_mid_job_is_retried_once_on_another(ray_session, local_run, inputs,
                                                             models_dir, tmp_path, monkeypatch,
                                                             caplog):
    """One job's actor is killed once (retried: a whole clip), the other's twice (failed)."""
    from functools import partial

    from joyvasa_core.batch import run as batch_run

    jobs, out = _absolute_jobs(inputs, tmp_path, 2), tmp_path / "ray"
    monkeypatch.setattr(batch_run, "run_batch",            # the actors get the tiny networks
                        partial(run_batch, model_context=hp.fast_liveportrait_build))
    with _Killer(out, {"clips/one.mp4": 1, "two.mp4": 2}) as killer:
        code = command.main([str(jobs), "--out-dir", str(out), *_defaults(models_dir),
                             "--ray", "local", "--cpus-per-actor", "1"])
    assert sorted(o for o, _ in killer.killed) == ["clips/one.mp4", "two.mp4", "two.mp4"]
    assert len({pid for _, pid in killer.killed}) == 3             # three different actors
    assert code == 1                                               # a job failed
    results = {r["output"]: r for r in _results(out)}              # one line per job
    assert len(_results(out)) == 2
    one, two = results["clips/one.mp4"], results["two.mp4"]
    assert (one["status"], one["error"], one["attempts"]) == ("ok", None, 2)
    assert (two["status"], two["attempts"]) == ("failed", 2)
    print(two["error"])
    assert two["error"].startswith("worker lost: the Ray actor rendering it died on all 2 ")
    retries = [r.getMessage() for r in caplog.records if "trying it again" in r.getMessage()]
    assert sorted(m.split(":")[0] for m in retries) == ["row 1", "row 2"]
    np.testing.assert_array_equal(_frames(out / "clips/one.mp4"),     # whole, and the same clip
                                  _frames(local_run[0] / "clips/one.mp4"))
    assert not (out / "two.mp4").exists() and _leftovers(out) == []
