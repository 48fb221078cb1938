"""Parity handlers read every setting from the fixture: variant fixtures of the same format.

Hidden fixture sets keep the names but change inputs and settings (cfg scale/mode,
flexibility, step t values, schedules, crop combinations, audio length, combinations,
n_prev_motions, n_diff_steps). Each test builds such a variant (from a reference
fixture or self-consistently with a tiny config) and checks the handler against a
value derived independently of the code path under test.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from conftest import PARITY
from helpers_precision import U, gamma
from joyvasa_core.parity.fixture import Fixture
from joyvasa_core.parity.registry import find_handler
from joyvasa_core.parity.runner import run_fixture

CPU = torch.device("cpu")


def write_fixture(folder: Path, name: str, tensors: dict[str, tuple[str, torch.Tensor]],
                  **meta) -> Fixture:
    """A fixture in the reference format: every tensor stored exactly, roles and shapes in the sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = {k: {"role": role, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
             for k, (role, t) in tensors.items()}
    stored = {k: t.detach().clone().contiguous() for k, (_, t) in tensors.items()}
    save_file(stored, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps({"fixture": name, "tensors": specs, **meta}))
    return Fixture.open(folder, name)


def reference_tensors(name: str, keep) -> tuple[dict[str, tuple[str, torch.Tensor]], dict]:
    """Tensors (exactly stored ones) of a reference fixture whose names pass ``keep``, and its sidecar."""
    fx = Fixture.open(PARITY, name)
    tensors = {k: (spec["role"], fx.tensor(k)) for k, spec in fx.specs.items()
               if keep(k) and fx.has_stored(k)}
    meta = {k: v for k, v in fx.meta.items() if k != "tensors"}
    return tensors, meta


def run(fx: Fixture) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        return find_handler(fx.name)(fx, CPU)


# ----------------------------------------------------------------------------- sampler step

def posterior_step(den: torch.Tensor, x_t: torch.Tensor, z: torch.Tensor, t: int, target: str,
                   cfg_scale: float, cfg_mode: str, flexibility: float, n: int,
                   threshold: tuple[float, float, float] | None = None) -> torch.Tensor:
    """The official step written out from a stored raw denoiser output [2, p + n, D] (float64);
    ``threshold`` (ratio, min, max) clips each CFG row at its clamped |value| quantile (numpy)."""
    from joyvasa_core.dit.schedule import DiffusionSchedule

    sched = DiffusionSchedule.build(500, "cosine")
    a, ab, abp = (float(v) for v in (sched.alphas[t], sched.alpha_bars[t], sched.alpha_bars[t - 1]))
    sigma = flexibility * float(sched.sigmas_flex[t]) + (1 - flexibility) * float(sched.sigmas_inflex[t])
    den = den[:, -n:].double()
    if threshold is not None:
        ratio, low, high = threshold
        rows = den.numpy().reshape(den.shape[0], -1)
        s = np.minimum(np.maximum(np.quantile(np.abs(rows), ratio, axis=1), low), high)
        den = torch.from_numpy(np.clip(rows, -s[:, None], s[:, None]).reshape(den.shape))
    pred = den[0:1] + cfg_scale * (den[1:2] - den[0:1])   # one condition: both modes agree
    x_t = x_t.double()
    if target == "sample":
        mean = (1 - abp) * math.sqrt(a) / (1 - ab) * x_t + (1 - a) * math.sqrt(abp) / (1 - ab) * pred
    else:
        mean = (x_t - (1 - a) / math.sqrt(1 - ab) * pred) / math.sqrt(a)
    return mean + sigma * z.double()


def test_sample_step_reads_cfg_flexibility_and_the_listed_steps(tmp_path):
    wanted = ("sample.t250", "noise.t1")
    tensors, meta = reference_tensors(
        "dit_sample_step",
        lambda k: k in ("motion_at_t", "audio_feat") or k.startswith(wanted))
    meta.update(cfg_scale=1.7, cfg_mode="independent", flexibility=0.5)
    fx = write_fixture(tmp_path, "dit_sample_step", tensors, **meta)
    out = run(fx)
    assert set(out) == {f"{w}.motion_next" for w in wanted}
    for w in wanted:
        target, t = w.split(".t")
        expected = posterior_step(fx.tensor(f"{w}.denoiser_out"), fx.tensor("motion_at_t"),
                                  fx.tensor(f"{w}.z"), int(t), target, 1.7, "independent", 0.5, 100)
        tol = 1e-3 if target == "noise" else 1e-4
        torch.testing.assert_close(out[f"{w}.motion_next"].double(), expected, atol=tol, rtol=1e-4)
    # The stored reference (cfg 2.8, flexibility 0) no longer matches: the settings were read.
    ref = Fixture.open(PARITY, "dit_sample_step").tensor("sample.t250.motion_next")
    assert (out["sample.t250.motion_next"] - ref).abs().max() > 1e-2


@pytest.mark.parametrize("threshold", [(0.9, 0.0, 10.0), (0.995, 0.05, 0.2)])
def test_sample_step_applies_the_dynamic_threshold(tmp_path, threshold):
    wanted = ("sample.t250", "noise.t1")
    tensors, meta = reference_tensors(
        "dit_sample_step", lambda k: k in ("motion_at_t", "audio_feat") or k.startswith(wanted))
    fx = write_fixture(tmp_path, "dit_sample_step", tensors, **{**meta, "dynamic_threshold": list(threshold)})
    out = run(fx)
    cfg = float(meta["cfg_scale"])
    for w in wanted:
        target, t = w.split(".t")
        args = (fx.tensor(f"{w}.denoiser_out"), fx.tensor("motion_at_t"), fx.tensor(f"{w}.z"),
                int(t), target, cfg, meta["cfg_mode"], 0.0, 100)
        expected = posterior_step(*args, threshold=threshold)
        tol = 1e-3 if target == "noise" else 1e-4
        torch.testing.assert_close(out[f"{w}.motion_next"].double(), expected, atol=tol, rtol=1e-4)
        # the clip changed the step: the threshold was applied, not ignored
        assert (expected - posterior_step(*args)).abs().max() > 10 * tol


@pytest.mark.parametrize("cfg_cond", [[], ""])
def test_sample_step_without_guidance_uses_the_conditional_output(tmp_path, cfg_cond):
    """The official ``cfg_cond=[]``: only the audio entry is denoised, no null-audio branch."""
    wanted = ("sample.t250",)
    tensors, meta = reference_tensors(
        "dit_sample_step", lambda k: k in ("motion_at_t", "audio_feat") or k.startswith(wanted))
    fx = write_fixture(tmp_path, "dit_sample_step", tensors, **{**meta, "cfg_cond": cfg_cond})
    out = run(fx)["sample.t250.motion_next"]
    # cfg scale 1 on the stored [uncond, cond] outputs selects the conditional prediction
    expected = posterior_step(fx.tensor("sample.t250.denoiser_out"), fx.tensor("motion_at_t"),
                              fx.tensor("sample.t250.z"), 250, "sample", 1.0, "incremental", 0.0, 100)
    torch.testing.assert_close(out.double(), expected, atol=1e-4, rtol=1e-4)
    guided = posterior_step(fx.tensor("sample.t250.denoiser_out"), fx.tensor("motion_at_t"),
                            fx.tensor("sample.t250.z"), 250, "sample", float(meta["cfg_scale"]),
                            "incremental", 0.0, 100)
    assert (expected - guided).abs().max() > 1e-2


def test_dynamic_threshold_off_values_and_bad_values():
    from joyvasa_core.dit.samplers import parse_threshold

    assert parse_threshold(0) is None and parse_threshold(None) is None and parse_threshold([]) is None
    assert parse_threshold([0.99, 1, 4]) == (0.99, 1.0, 4.0)
    with pytest.raises(ValueError, match="ratio, min, max"):
        parse_threshold([0.99, 1])
    with pytest.raises(ValueError, match="ratio"):
        parse_threshold([1.5, 1, 4])


# ----------------------------------------------------------------------------- schedules

def test_schedules_follow_the_output_names_and_defaults(tmp_path):
    tensors = {f"{mode}{n}.{table}": ("output", torch.zeros(n + 1)) for mode, n in (("linear", 20), ("cosine", 7))
               for table in ("betas", "alphas", "alpha_bars", "sigmas_flex", "sigmas_inflex")}
    names = list(tensors)
    fx = write_fixture(tmp_path, "dit_schedules", tensors, defaults={"beta_1": 1e-4, "beta_T": 0.05, "s": 0.008})
    out = run(fx)
    assert set(out) == set(names)
    expected = np.concatenate([[0.0], np.linspace(1e-4, 0.05, 20)])
    # float32 linspace: start + i·step, rounded (≤ 3 roundings of values ≤ beta_T)
    np.testing.assert_allclose(out["linear20.betas"].numpy(), expected, atol=gamma(3) * 0.05, rtol=0)
    # exp of a float32 sum of 21 float32 logs: relative ≤ U·(1 + 22·|log ab|) (see test_dit_schedule)
    bars = np.cumprod(1 - expected)
    np.testing.assert_allclose(out["linear20.alpha_bars"].numpy(), bars, rtol=U * (1 + 22 * abs(np.log(bars[-1]))))
    assert out["cosine7.betas"].shape == (8,) and out["cosine7.betas"][0] == 0


# ----------------------------------------------------------------------------- crop

def test_crop_other_sizes_and_vy_ratio(tmp_path):
    ref = Fixture.open(PARITY, "crop")
    tensors = {k: ("input", ref.tensor(k)) for k in ("background_rgb", "lmk203", "lmk106")}
    outputs = ["lmk203.d384.s2.3.M_o2c", "lmk203.d384.s2.3.pt_crop", "lmk106.d512.s2.3.pt_crop",
               "lmk106.d512.s2.3.img_crop", "lmk106.d512.s2.3.img_crop_128x128"]
    tensors.update({k: ("output", torch.zeros(1)) for k in outputs})
    fx = write_fixture(tmp_path, "crop", tensors, vy_ratio=0.0)
    out = run(fx)
    assert set(outputs) <= set(out)
    # M_o2c scales with dsize; vy_ratio -0.125 -> 0 moves crop points up by 0.125 * dsize.
    shift = torch.tensor([0.0, 0.125 * 512])
    torch.testing.assert_close(out["lmk106.d512.s2.3.pt_crop"] + shift, ref.tensor("lmk106.d512.s2.3.pt_crop"),
                               atol=1e-3, rtol=1e-5)
    official_512 = ref.tensor("lmk203.d512.s2.3.M_o2c")
    m384 = out["lmk203.d384.s2.3.M_o2c"]
    torch.testing.assert_close(m384[:2, :2], official_512[:2, :2] * 0.75, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m384[2], official_512[2])
    crop = out["lmk106.d512.s2.3.img_crop"].numpy()
    np.testing.assert_array_equal(out["lmk106.d512.s2.3.img_crop_128x128"].numpy(),
                                  cv2.resize(crop, (128, 128), interpolation=cv2.INTER_AREA))


# ----------------------------------------------------------------------------- pipeline keypoints

@pytest.mark.slow
def test_pipeline_motion_longer_audio_and_other_combinations(tmp_path):
    """70000 samples: 2 windows, 112 frames; causal decode/EMA/driving keep the official first 30."""
    tensors, meta = reference_tensors("pipeline_motion",
                                      lambda k: not k.startswith(("render.", "x_d.expr_nostitch")))
    combos = dict(meta["combinations"])
    del combos["expr_nostitch"]
    base = combos["expr_stitch"]
    combos["lip_retarget_relative"] = {**base, "flag_stitching": False, "flag_lip_retargeting": True}
    combos["eye_retarget_absolute"] = {**combos["cli_default"], "flag_eye_retargeting": True}
    meta.update(combinations=combos, audio_len_samples=70000)
    fx = write_fixture(tmp_path, "pipeline_motion", tensors, **meta)
    out = run(fx)
    ref = Fixture.open(PARITY, "pipeline_motion")
    assert out["decoded.exp"].shape[0] == 112 and not any(k.startswith("render.") for k in out)
    for prefix in ("decoded.", "smoothed.", "x_d.expr_stitch", "x_d.pose_stitch", "x_d.cli_default"):
        for name in [k for k in ref.names("output") if k.startswith(prefix)]:
            torch.testing.assert_close(out[name][:30], ref.tensor(name), atol=1e-4, rtol=1e-4)
    # The stubbed sampler's coefficients restart in window 1 (decode is per frame).
    torch.testing.assert_close(out["decoded.exp"][100:], out["decoded.exp"][:12])
    # Retargeting flags: the official loop adds no deltas (no driving landmarks) ...
    x_s = ref.tensor("x_s")
    torch.testing.assert_close(out["x_d.lip_retarget_relative"], x_s.expand(112, -1, -1))
    # ... and without relative motion it is the plain composition.
    torch.testing.assert_close(out["x_d.eye_retarget_absolute"], out["x_d.cli_default"])


def test_pipeline_motion_normalize_lip_reads_the_source_landmarks(tmp_path):
    """flag_normalize_lip: the lip-closing delta of the stored landmarks' ratio is added
    (after stitching), only above the threshold, and only with relative motion."""
    from joyvasa_core.config import STITCHING_RETARGETING
    from joyvasa_core.parity.lp_keypoints import filled_stitching

    tensors, meta = reference_tensors("pipeline_motion", lambda k: not k.startswith("render."))
    combos = meta["combinations"]
    lip = {"lip_" + k: {**combos[k], "flag_normalize_lip": True} for k in ("expr_stitch", "expr_nostitch",
                                                                        "cli_default")}
    lip["lip_closed_source"] = {**lip["lip_expr_nostitch"], "lip_normalize_threshold": 0.9}
    meta.update(combinations={**combos, **lip})
    # landmarks with an open mouth: inner lips 90/102 apart by 0.4 of the mouth width 48/66
    lmk = torch.rand(203, 2, generator=torch.Generator().manual_seed(3)) * 10
    lmk[48], lmk[66], lmk[90], lmk[102] = (torch.tensor(v) for v in ([0.0, 0.0], [10.0, 0.0],
                                                                     [5.0, -2.0], [5.0, 2.0]))
    tensors["source_lmk"] = ("input", lmk)
    fx = write_fixture(tmp_path, "pipeline_motion", tensors, **meta)
    out = run(fx)
    ref = Fixture.open(PARITY, "pipeline_motion")
    x_s = ref.tensor("x_s")
    lip_mlp = filled_stitching(STITCHING_RETARGETING, CPU)["lip"]
    with torch.inference_mode():
        delta = lip_mlp(torch.cat([x_s.flatten(1), torch.tensor([[0.4, 0.0]])], dim=1)).reshape(1, 21, 3)
    for name in ("expr_stitch", "expr_nostitch"):
        torch.testing.assert_close(out[f"x_d.lip_{name}"], ref.tensor(f"x_d.{name}") + delta,
                                   atol=1e-5, rtol=1e-4)
    assert delta.abs().max() > 1e-3
    # the closed-mouth threshold and absolute motion leave the keypoints as they were
    torch.testing.assert_close(out["x_d.lip_closed_source"], ref.tensor("x_d.expr_nostitch"), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["x_d.lip_cli_default"], ref.tensor("x_d.cli_default"), atol=1e-5, rtol=1e-4)
    del tensors["source_lmk"]
    with pytest.raises(KeyError, match="203-point landmarks"):
        run(write_fixture(tmp_path / "no_lmk", "pipeline_motion", tensors, **meta))


def test_pipeline_motion_eyes_region_is_joyvasas(tmp_path):
    """JoyVASA's loop has no 'eyes' branch: source expression and rotation, and only the
    relative scale and translation (tz zeroed) of the motion."""
    from joyvasa_core import keypoints as kpm
    from joyvasa_core.config import MOTION_EXTRACTOR
    from joyvasa_core.parity.lp_keypoints import filled_motion_extractor, source_image

    tensors, meta = reference_tensors("pipeline_motion", lambda k: not k.startswith("render."))
    plain = {**meta["combinations"]["pose_nostitch"], "animation_region": "eyes"}
    meta.update(combinations={"eyes": plain, "eyes_stitch": {**plain, "flag_stitching": True}})
    out = run(write_fixture(tmp_path, "pipeline_motion", tensors, **meta))
    with torch.inference_mode():
        image = source_image(Fixture.open(PARITY, "pipeline_motion").tensor("source_rgb"))
        info = kpm.KeypointInfo.from_raw(filled_motion_extractor(MOTION_EXTRACTOR, CPU)(image))
    t_s = info.t.clone()
    t_s[:, 2] = 0
    scale, t = out["smoothed.scale"], out["smoothed.t"]
    t_new = t_s + (t - t[:1])
    t_new[:, 2] = 0
    expected = (out["x_s"] - t_s[:, None]) * (scale / scale[:1])[:, :, None] + t_new[:, None]
    torch.testing.assert_close(out["x_d.eyes"], expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out["x_d.eyes_stitch"], out["x_d.eyes"], atol=1e-4)


# ----------------------------------------------------------------------------- other config

@pytest.fixture
def one_thread():
    """Tiny networks run ~100x faster on one thread when the 2 cores are shared (no OpenMP spin-waits)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = {"motion_feat_dim": 70, "n_motions": 30, "n_prev_motions": 25, "feature_dim": 64,
        "n_diff_steps": 20, "audio_model": "hubert_zh", "fps": 25}


def tiny_model(with_audio_encoder: bool):
    from joyvasa_core.parity.dit import filled_generator

    fx = Fixture(directory=Path("."), name="tiny", meta={"config": TINY, "tensors": {}})
    return filled_generator(fx, CPU, with_audio_encoder)


def unit(*shape: int, seed: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def manual_window(model, feat, prev_motion, prev_audio, x_T, zs, cfg_scale, n_steps=None):
    """The official incremental-CFG DDPM loop written out (target 'sample'); returns the trajectory
    (of the first ``n_steps`` steps only if given)."""
    net, n, sched = model.denoising_net, model.n_motions, model.diffusion_sched
    audio_in = torch.cat([model.null_audio_feat.expand(1, n, -1), feat])
    x, traj = x_T, [x_T]
    for k, t in enumerate(range(sched.num_steps, 0, -1)[:n_steps]):
        out = net(torch.cat([x, x]), audio_in, torch.cat([prev_motion] * 2), torch.cat([prev_audio] * 2),
                  torch.tensor([t, t]))[:, -n:]
        x0 = out[:1] + cfg_scale * (out[1:] - out[:1])
        a, ab, abp = sched.alphas[t], sched.alpha_bars[t], sched.alpha_bars[t - 1]
        x = (1 - abp) * a.sqrt() / (1 - ab) * x + (1 - a) * abp.sqrt() / (1 - ab) * x0
        if t > 1:
            x = x + sched.sigmas_inflex[t] * zs[k]
        traj.append(x)
    return traj


def test_denoiser_and_step_with_another_config(tmp_path, one_thread):
    """n_prev_motions 25, 20 steps, two windows in one CFG batch (context repeated)."""
    model = tiny_model(False)
    net, p, n = model.denoising_net, TINY["n_prev_motions"], TINY["n_motions"]
    motion, audio = unit(4, n, 70, seed=1), unit(4, n, 64, seed=2)
    prev_m, prev_a = unit(2, p, 70, seed=3), unit(2, p, 64, seed=4)
    with torch.inference_mode():
        expected = {"out_t20": net(motion, audio, model.start_motion_feat.expand(4, -1, -1),
                                   model.start_audio_feat.expand(4, -1, -1), torch.full((4,), 20)),
                    "out_t7_prev_legacy_pe": net(motion, audio, torch.cat([prev_m] * 2), torch.cat([prev_a] * 2),
                                                 torch.full((4,), 7), "legacy")}
    tensors = {"motion_feat": ("input", motion), "audio_feat": ("input", audio),
               "start_motion_feat": ("input", model.start_motion_feat.detach()),
               "start_audio_feat": ("input", model.start_audio_feat.detach()),
               "prev_motion_feat": ("input", prev_m), "prev_audio_feat": ("input", prev_a),
               "alignment_mask": ("buffer", net.alignment_mask)}
    tensors.update({k: ("output", v) for k, v in expected.items()})
    fx = write_fixture(tmp_path, "dit_denoiser", tensors, config=TINY)
    results = run_fixture(fx, CPU)
    assert {r.output for r in results} == set(expected) and all(r.ok for r in results), results
    assert run(fx)["alignment_mask"].shape == (p + n, p + n)

    # One step at t = 13 of the 20-step schedule, cfg 1.7.
    x_t, feat, z = unit(1, n, 70, seed=5), unit(1, n, 64, seed=6), unit(1, n, 70, seed=7)
    with torch.inference_mode():
        sm, sa = model.start_context(1)
        traj = manual_window(model, feat, sm, sa, x_t, [z], 1.7, n_steps=1)
    sched = model.diffusion_sched
    assert sched.num_steps == 20
    step = write_fixture(tmp_path / "step", "dit_sample_step",
                         {"motion_at_t": ("input", x_t), "audio_feat": ("input", feat),
                          "sample.t20.z": ("input", z), "sample.t20.motion_next": ("output", traj[1])},
                         config=TINY, cfg_scale=1.7, cfg_mode="incremental", flexibility=0)
    results = run_fixture(step, CPU)
    assert len(results) == 1 and results[0].ok, results


@pytest.mark.slow
def test_full_sampling_and_e2e_with_another_config(tmp_path, one_thread):
    """20 steps, n_prev_motions 25, 30-frame windows: windows, noise order and chaining come from the files."""
    model = tiny_model(True)
    from joyvasa_core.dit.audio_encoder import encode_audio

    n, p, steps = TINY["n_motions"], TINY["n_prev_motions"], TINY["n_diff_steps"]
    window = 640 * n
    audio = 0.3 * torch.sin(torch.arange(30000) / 7.0) + 0.05 * unit(30000, seed=8)
    noise = unit(1 + 2 * (steps - 1), 1, n, 70, seed=9)
    template = {"mean_exp": unit(63, seed=10) * 0.02, "std_exp": 0.01 + 0.02 * unit(63, seed=11).abs(),
                "min_scale": [1.3], "max_scale": [1.9], "min_t": [-0.1, -0.1, -0.05], "max_t": [0.1, 0.1, 0.05],
                "min_pitch": [-20.0], "max_pitch": [20.0], "min_yaw": [-30.0], "max_yaw": [30.0],
                "min_roll": [-15.0], "max_roll": [15.0]}
    template = {k: torch.as_tensor(v).tolist() for k, v in template.items()}

    # Reference: pad (1280, 640), 2 windows (clip_len 49 > 30), last window zero-padded, 11 frames dropped.
    padded = F.pad(audio, (1280, 640 + 2 * window - 31920))
    with torch.inference_mode():
        feats = [encode_audio(model, padded[None, w * window:(w + 1) * window]).audio_feat for w in range(2)]
        sm, sa = model.start_context(1)
        traj0 = manual_window(model, feats[0], sm, sa, noise[0], noise[1:steps], 2.2)
        traj1 = manual_window(model, feats[1], traj0[-1][:, -p:], feats[0][:, -p:], noise[0],
                              noise[steps:], 2.2)
    coef = torch.cat([traj0[-1][0], traj1[-1][0, :49 - n]])
    exp = (coef[:, :63] * torch.tensor(template["std_exp"]) + torch.tensor(template["mean_exp"])).reshape(-1, 21, 3)

    e2e = write_fixture(tmp_path / "e2e", "gen_motion_sequence_e2e",
                        {"audio": ("input", audio), "noise": ("input", noise),
                         "motion.exp": ("output", exp)},
                        config=TINY, cfg_scale=2.2, cfg_mode="incremental", template=template)
    results = run_fixture(e2e, CPU)
    assert len(results) == 1 and results[0].ok, results

    full = write_fixture(tmp_path / "full", "dit_sample_full", {
        "audio_w0": ("input", padded[None, :window]), "audio_w1": ("input", padded[None, window:2 * window]),
        "w0.motion_at_T": ("input", noise[0]), "w0.z": ("input", noise[1:steps]),
        "w1.z": ("input", noise[steps:]), "w1.prev_motion_feat": ("input", traj0[-1][:, -p:]),
        "w1.prev_audio_feat": ("input", feats[0][:, -p:]),
        "w0.traj": ("output", torch.stack(traj0)), "w0.audio_feat": ("output", feats[0]),
        "w1.motion": ("output", traj1[-1]), "w1.audio_feat": ("output", feats[1])},
        config=TINY, cfg_scale=2.2, cfg_mode="incremental")
    results = run_fixture(full, CPU)
    assert len(results) == 4 and all(r.ok for r in results), results
