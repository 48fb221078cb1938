"""The pack in a long-lived, real ComfyUI server: cancel latency, recovery, memory over many runs.

Starts ComfyUI's ``main.py`` (an existing ComfyUI checkout and its Python) with
this pack linked into a fresh ``--base-directory``, then drives it over HTTP and
its WebSocket as the frontend does, with the shipped API workflow:

1. **cancel**: a longer clip is queued; once the render has drawn a few frames,
   ``POST /interrupt``. Reports the time from the interrupt to the server's
   ``execution_interrupted`` and the render's time per frame (from its progress
   messages), then checks that the next prompt runs normally;
2. **failure**: a photo without a face fails with the pack's message, and the next
   good prompt succeeds;
3. **soak**: ``--runs`` prompts with different seeds (so nothing is served from
   ComfyUI's cache but the models); the server's resident memory after each.

    python benchmarks/comfyui_server.py --comfyui /tmp/comfy/ComfyUI \\
        --python /tmp/comfy/venv/bin/python --models /tmp/comfy_models [--runs 20]

``--models`` holds ``joyvasa/`` (the official ``pretrained_weights`` tree). With
synthetic files, ``tests/helpers_pipeline.write_full_size_renderer_weights``
makes one whose renderer is full size (what the cancel latency is about).
``--tiny-renderer`` instead serves the small test renderer
(``helpers_pipeline.write_fast_pretrained_weights`` files, through a test-only
shim node that makes the loader build that configuration): the same code path
at a fraction of the cost, for the many runs of the soak on a 2-core machine.
``--checks`` picks what runs. Needs ``psutil`` and ``websockets`` in the Python
running this script.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflows" / "JoyVASA_talking_portrait_api.json"


# ------------------------------------------------------------------------------ inputs

def espeak(folder: Path, name: str, text: str, seconds: float | None = None) -> Path:
    """Real speech from espeak-ng, optionally cut to ``seconds``, as a 16 kHz mono WAV."""
    import av

    raw = folder / f"{name}.raw.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
    with av.open(str(raw)) as src:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        pcm = np.concatenate([f.to_ndarray() for frame in src.decode(audio=0)
                              for f in resampler.resample(frame)], axis=1)
    start = int(np.argmax(np.abs(pcm[0]) > 300))          # skip leading silence
    pcm = pcm[:, start:start + (int(seconds * 16000) if seconds else pcm.shape[1])]
    out = folder / f"{name}.wav"
    with av.open(str(out), "w") as dst:
        stream = dst.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm), format="s16", layout="mono")
        frame.sample_rate = 16000
        dst.mux(stream.encode(frame))
        dst.mux(stream.encode(None))
    raw.unlink()
    return out


def make_inputs(folder: Path) -> dict[str, str]:
    from PIL import Image
    import skimage.data

    Image.fromarray(skimage.data.astronaut()).save(folder / "portrait.png")
    Image.fromarray(np.full((384, 384, 3), 128, np.uint8)).save(folder / "wall.png")
    espeak(folder, "long", "Hello there, this is a longer sentence to render.", seconds=3.2)
    espeak(folder, "short", "Hi.", seconds=0.08)
    return {"portrait": "portrait.png", "wall": "wall.png", "long": "long.wav", "short": "short.wav"}


# ------------------------------------------------------------------------------ server

class Server:
    """ComfyUI's main.py in its own process group, with a WebSocket listener thread."""

    def __init__(self, comfyui: Path, python: str, base: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.events: queue.Queue = queue.Queue()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "PYTHONDONTWRITEBYTECODE": "1"}
        self.log = open(base / "server.log", "w")
        self.proc = subprocess.Popen(
            [python, "main.py", "--cpu", "--base-directory", str(base), "--listen", "127.0.0.1",
             "--port", str(self.port), "--disable-auto-launch"],
            cwd=comfyui, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()
        threading.Thread(target=self._listen, daemon=True).start()

    def _wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see server.log")
            try:
                self.get("/object_info/JoyVASARenderPortrait")
                return
            except OSError:
                time.sleep(1)
        raise TimeoutError("server not ready")

    def _listen(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        with connect(f"ws://127.0.0.1:{self.port}/ws?clientId={self.client_id}",
                     max_size=None) as ws:
            try:
                for message in ws:
                    if isinstance(message, str):
                        self.events.put((time.monotonic(), json.loads(message)))
            except ConnectionClosed:     # the server stopped
                return

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def post(self, path: str, body) -> dict:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def queue_prompt(self, prompt: dict) -> str:
        return self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 3600, on_event=None) -> tuple[str, list]:
        """Events of ``prompt_id`` until it ends: ('success' | 'error' | 'interrupted', events)."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                stamp, event = self.events.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    return "server died", seen
                continue
            data = event.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            seen.append((stamp, event))
            if on_event is not None:
                on_event(stamp, event)
            kind = event["type"]
            if kind == "execution_success":
                return "success", seen
            if kind == "execution_error":
                return "error", seen
            if kind == "execution_interrupted":
                return "interrupted", seen
        return "timeout", seen

    def rss_mib(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompt_for(image: str, audio: str, seed: int) -> dict:
    """The shipped API workflow with these inputs, the fast sampler and ``seed``."""
    prompt = json.loads(WORKFLOW.read_text())
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "LoadImage":
            inputs["image"] = image
        elif node["class_type"] == "LoadAudio":
            inputs["audio"] = audio
        elif node["class_type"] == "JoyVASAAudioToMotion":
            inputs.update(seed=seed, sampler="ddim", steps=2)
        elif node["class_type"] == "SaveVideo":
            inputs["filename_prefix"] = f"video/run{seed}"
    return prompt


def render_progress(events: list) -> list[tuple[float, int]]:
    """(time, frames done) of every progress message of the render node."""
    return [(stamp, e["data"]["value"]) for stamp, e in events
            if e["type"] == "progress" and e["data"].get("node") == "6"]


# ------------------------------------------------------------------------------ checks

def check_cancel(server: Server, files: dict, after_frames: int) -> dict:
    pid = server.queue_prompt(prompt_for(files["portrait"], files["long"], seed=1000))
    sent = {}

    def interrupt_when_rendering(stamp: float, event: dict) -> None:
        if "at" not in sent and event["type"] == "progress" and event["data"].get("node") == "6" \
                and event["data"]["value"] >= after_frames:
            sent["at"] = time.monotonic()
            server.post("/interrupt", {})

    status, events = server.wait(pid, on_event=interrupt_when_rendering)
    ended = events[-1][0] if events else float("nan")
    steps = render_progress(events)
    per_frame = [b[0] - a[0] for a, b in zip(steps, steps[1:]) if b[1] > a[1]]
    return {"status": status, "frames_done": steps[-1][1] if steps else 0,
            "frames_total": next((e["data"]["max"] for _, e in events
                                  if e["type"] == "progress" and e["data"].get("node") == "6"), None),
            "cancel_latency_s": ended - sent["at"] if "at" in sent else None,
            "seconds_per_frame": statistics.median(per_frame) if per_frame else None}


def run_one(server: Server, image: str, audio: str, seed: int) -> dict:
    start = time.monotonic()
    status, events = server.wait(server.queue_prompt(prompt_for(image, audio, seed)))
    message = next((e["data"].get("exception_message", "") for _, e in events
                    if e["type"] == "execution_error"), "")
    return {"status": status, "seconds": time.monotonic() - start, "error": message.strip()}


SHIM = """# Test-only (benchmarks/comfyui_server.py --tiny-renderer): build the small renderer.
import sys
sys.path[:0] = [{tests!r}, {root!r}]
import helpers_pipeline
_BUILD = helpers_pipeline.fast_liveportrait_build()   # kept referenced: collecting it would undo it
_BUILD.__enter__()
NODE_CLASS_MAPPINGS = {{}}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI checkout (main.py)")
    parser.add_argument("--python", required=True, help="the Python of ComfyUI's environment")
    parser.add_argument("--models", type=Path, required=True, help="folder holding joyvasa/")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cancel-after-frames", type=int, default=2)
    parser.add_argument("--out", type=Path, help="keep the base directory and report here")
    parser.add_argument("--tiny-renderer", action="store_true",
                        help="--models holds helpers_pipeline.write_fast_pretrained_weights files")
    parser.add_argument("--checks", nargs="+", choices=["cancel", "failure", "soak"],
                        default=["cancel", "failure", "soak"])
    args = parser.parse_args()

    base = args.out or Path(tempfile.mkdtemp(prefix="comfy-soak-"))
    for sub in ("custom_nodes", "models", "input", "output"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / "comfyui-joyvasa"
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    if not (base / "models" / "joyvasa").exists():
        (base / "models" / "joyvasa").symlink_to((args.models / "joyvasa").resolve())
    if args.tiny_renderer:   # sorts after the pack, so it patches the loader once the pack is in
        shim = base / "custom_nodes" / "zz_joyvasa_tiny_renderer"
        shim.mkdir(exist_ok=True)
        (shim / "__init__.py").write_text(SHIM.format(tests=str(ROOT / "tests"), root=str(ROOT)))
    files = make_inputs(base / "input")
    report: dict = {}
    server = Server(args.comfyui, args.python, base)
    try:
        first = run_one(server, files["portrait"], files["short"], seed=0)   # loads the models
        print(f"warm-up run: {first}", flush=True)
        if "cancel" in args.checks:
            report["cancel"] = check_cancel(server, files, args.cancel_after_frames)
            print(f"cancel: {report['cancel']}", flush=True)
            report["after_cancel"] = run_one(server, files["portrait"], files["short"], seed=1)
            print(f"next prompt after the cancel: {report['after_cancel']}", flush=True)
        if "failure" in args.checks:
            report["no_face"] = run_one(server, files["wall"], files["short"], seed=2)
            print(f"no-face prompt: {report['no_face']}", flush=True)
            report["after_failure"] = run_one(server, files["portrait"], files["short"], seed=3)
            print(f"next prompt after the failure: {report['after_failure']}", flush=True)
        report["soak"] = []
        for i in range(1, args.runs + 1 if "soak" in args.checks else 1):
            result = run_one(server, files["portrait"], files["short"], seed=100 + i)
            result["rss_mib"] = server.rss_mib()
            report["soak"].append(result)
            print(f"run {i}: {result['status']} in {result['seconds']:.1f} s, server RSS "
                  f"{result['rss_mib']:.0f} MiB", flush=True)
    finally:
        server.stop()
    soak = report["soak"]
    if len(soak) >= 2:
        report["rss_ratio_last_vs_run2"] = soak[-1]["rss_mib"] / soak[1]["rss_mib"]
        print(f"server RSS after run {len(soak)} / after run 2 = "
              f"{report['rss_ratio_last_vs_run2']:.3f}")
    (base / "report.json").write_text(json.dumps(report, indent=1))
    print(f"report: {base / 'report.json'}")
    ok = all(r["status"] == "success" for r in soak)
    if "cancel" in args.checks:
        ok &= report["cancel"]["status"] == "interrupted" and \
            report["after_cancel"]["status"] == "success"
    if "failure" in args.checks:
        ok &= report["no_face"]["status"] == "error" and "no face" in report["no_face"]["error"] \
            and report["after_failure"]["status"] == "success"
    if args.out is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
