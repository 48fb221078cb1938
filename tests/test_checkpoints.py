"""Safe reading and validation of checkpoint files (joyvasa_core.checkpoints)."""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import SCHEMA
from helpers_checkpoints import (make_motion_template, write_motion_generator_file,
                                 write_motion_template, write_state_dict)
from joyvasa_core.checkpoints import (MOTION_TEMPLATE_REQUIRED, CheckpointError, guess_slot,
                                      layout_of, read_motion_generator_file, read_motion_template,
                                      read_state_dict, read_stitching_file, validate_state_dict)


def _schema_layout(name: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    entries = json.loads((SCHEMA / f"{name}.json").read_text())["entries"]
    return {e["key"]: (tuple(e["shape"]), getattr(torch, e["dtype"])) for e in entries}


def _small_sd() -> OrderedDict:
    g = torch.Generator().manual_seed(0)
    return OrderedDict([("mlp.0.weight", torch.randn(8, 6, generator=g)),
                        ("mlp.0.bias", torch.randn(8, generator=g)),
                        ("norm.num_batches_tracked", torch.tensor(3))])


class _Evil:
    """Unpickling this runs ``os.system``: a stand-in for a malicious checkpoint."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# --------------------------------------------------------------------------- state dicts

@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_state_dict_roundtrip(tmp_path, suffix):
    sd = _small_sd()
    path = write_state_dict(tmp_path / f"m{suffix}", sd)
    got = read_state_dict(path)
    assert set(got) == set(sd)  # safetensors stores keys sorted
    for k in sd:
        assert got[k].dtype == sd[k].dtype and torch.equal(got[k], sd[k])


def test_type_is_sniffed_not_taken_from_suffix(tmp_path):
    sd = _small_sd()
    path = tmp_path / "really_safetensors.pth"
    save_file(dict(sd), str(path))
    assert torch.equal(read_state_dict(path)["mlp.0.weight"], sd["mlp.0.weight"])


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("keep", [0.5, 40, 0])
def test_truncated_file_names_the_file(tmp_path, suffix, keep):
    path = write_state_dict(tmp_path / f"warping_module{suffix}", _small_sd())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path, slot="warping_module")
    msg = str(info.value)
    assert str(path) in msg
    assert ("corrupt or truncated" in msg) or ("empty" in msg)
    assert "KwaiVGI/LivePortrait" in msg  # the fix names the download


def test_placeholder_files_are_explained(tmp_path):
    lfs = tmp_path / "lfs.pth"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n")
    html = tmp_path / "page.pth"
    html.write_text("<!DOCTYPE html><html><body>Not found</body></html>")
    with pytest.raises(CheckpointError, match="Git LFS pointer"):
        read_state_dict(lfs)
    with pytest.raises(CheckpointError, match="web page"):
        read_state_dict(html)
    with pytest.raises(CheckpointError, match="is a folder"):
        read_state_dict(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "absent.pth", slot="spade_generator")


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused_without_running(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "appearance_feature_extractor.pth"
    payload = {"first.conv.weight": torch.zeros(1), "x": _Evil(marker)}
    if legacy:  # a bare pickle, not torch's zip container
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match="refused") as info:
        read_state_dict(path, slot="appearance_feature_extractor")
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_nested_containers_are_named(tmp_path):
    stitching = tmp_path / "s.pth"
    torch.save({"retarget_shoulder": _small_sd(), "retarget_mouth": _small_sd(),
                "retarget_eye": _small_sd()}, stitching)
    with pytest.raises(CheckpointError, match="stitching/retargeting file"):
        read_state_dict(stitching, slot="motion_extractor")
    generator = write_motion_generator_file(tmp_path / "g.pt", _small_sd(), args={"a": 1})
    with pytest.raises(CheckpointError, match="motion generator"):
        read_state_dict(generator, slot="motion_extractor")


# --------------------------------------------------------------------------- validation

def test_validate_accepts_exact_layout_and_other_float_precision(tmp_path):
    sd = _small_sd()
    validate_state_dict(sd, layout_of(sd), tmp_path / "x.pth", "lip")
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
    validate_state_dict(half, layout_of(sd), tmp_path / "x.pth", "lip")


def test_validate_reports_every_problem(tmp_path):
    expected = layout_of(_small_sd())
    sd = _small_sd()
    del sd["mlp.0.bias"]
    sd["mlp.0.weight"] = torch.zeros(8, 7)
    sd["norm.num_batches_tracked"] = torch.tensor(3.0)
    sd["extra.a"] = torch.zeros(1)
    sd["extra.b"] = torch.zeros(1)
    path = tmp_path / "lip.pth"
    with pytest.raises(CheckpointError) as info:
        validate_state_dict(sd, expected, path, "lip", fix="Use the real file.")
    msg = str(info.value)
    assert str(path) in msg and "Fix: Use the real file." in msg
    assert "1 missing keys: mlp.0.bias" in msg
    assert "2 unexpected keys: extra.a, extra.b" in msg
    assert "mlp.0.weight: file (8, 7), expected (8, 6)" in msg
    assert "norm.num_batches_tracked: file torch.float32, expected torch.int64" in msg


def test_validate_truncates_long_lists(tmp_path):
    expected = {f"k{i}": ((1,), torch.float32) for i in range(30)}
    with pytest.raises(CheckpointError) as info:
        validate_state_dict({}, expected, tmp_path / "x.pth", "lip", max_listed=5)
    assert "30 missing keys" in str(info.value) and "and 25 more" in str(info.value)


SLOTS = ["appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator"]


@pytest.mark.parametrize("slot", SLOTS)
def test_guess_slot_recognises_every_schema(slot):
    layout = _schema_layout(slot)
    assert guess_slot(dict.fromkeys(layout)) == slot


def test_guess_slot_stitching_parts_and_generator():
    parts = json.loads((SCHEMA / "stitching_retargeting_module.json").read_text())["parts"]
    for name, part in parts.items():
        sd = {e["key"]: torch.zeros(e["shape"]) for e in part["entries"]}  # 'module.' keys
        assert guess_slot(sd) == f"stitching_retargeting_module part {name} ({part['loaded_as']})"
    keys = json.loads((SCHEMA / "motion_generator.json").read_text())["entries_in_file_order"]
    assert guess_slot(dict.fromkeys(keys)) == "motion_generator"
    assert guess_slot({"foo.weight": None}) is None


def test_wrong_slot_is_detected(tmp_path):
    f_layout = _schema_layout("appearance_feature_extractor")
    sd = {k: torch.zeros(shape, dtype=dtype) for k, (shape, dtype) in f_layout.items()}
    path = tmp_path / "liveportrait/base_models/motion_extractor.pth"
    with pytest.raises(CheckpointError) as info:
        validate_state_dict(sd, _schema_layout("motion_extractor"), path, "motion_extractor")
    msg = str(info.value)
    assert "look like the appearance_feature_extractor file" in msg
    assert "212 missing keys" in msg and "107 unexpected keys" in msg
    assert "liveportrait/base_models/motion_extractor.pth" in msg  # the fix names the place


# --------------------------------------------------------------------------- stitching

def _stitching_parts() -> dict[str, OrderedDict]:
    out = {}
    for i, part in enumerate(("retarget_shoulder", "retarget_mouth", "retarget_eye")):
        g = torch.Generator().manual_seed(i)
        out[part] = OrderedDict([("mlp.0.weight", torch.randn(4, 3 + i, generator=g)),
                                 ("mlp.0.bias", torch.randn(4, generator=g))])
    return out


def test_stitching_official_and_kijai_layouts_agree(tmp_path):
    parts = _stitching_parts()
    official = tmp_path / "stitching_retargeting_module.pth"
    torch.save({p: OrderedDict(("module." + k, v) for k, v in sd.items())
                for p, sd in parts.items()}, official)
    kijai = tmp_path / "stitching_retargeting_module.safetensors"
    save_file({f"{p}_module.{k}": v for p, sd in parts.items() for k, v in sd.items()}, str(kijai))
    for path in (official, kijai):
        got = read_stitching_file(path)
        assert list(got) == list(parts)
        for p in parts:
            assert set(got[p]) == set(parts[p])
            assert all(torch.equal(got[p][k], parts[p][k]) for k in parts[p])


def test_stitching_strips_only_the_leading_prefix(tmp_path):
    parts = _stitching_parts()
    path = tmp_path / "s.pth"
    torch.save({p: {"module.inner.module.w": torch.ones(1)} for p in parts}, path)
    assert list(read_stitching_file(path)["retarget_eye"]) == ["inner.module.w"]


def test_stitching_incomplete_or_foreign_files(tmp_path):
    parts = _stitching_parts()
    partial = tmp_path / "partial.pth"
    torch.save({"retarget_shoulder": parts["retarget_shoulder"]}, partial)
    with pytest.raises(CheckpointError, match="missing part.*retarget_mouth, retarget_eye"):
        read_stitching_file(partial)
    foreign = write_state_dict(tmp_path / "g.safetensors",
                               {"G_middle_0.conv_0.bias": torch.zeros(2), "fc.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="look like the spade_generator"):
        read_stitching_file(foreign)


# --------------------------------------------------------------------------- motion generator

def test_motion_generator_roundtrip_with_schema_args(tmp_path):
    sd = _small_sd()
    path = write_motion_generator_file(tmp_path / "iter_0020000.pt", sd, iteration=20000)
    args, got, it = read_motion_generator_file(path)
    expected = json.loads((SCHEMA / "motion_generator.json").read_text())["args_namespace"]
    assert args == expected  # data_root PosixPath -> "data"
    assert isinstance(args, dict) and isinstance(args["data_root"], str)
    assert it == 20000
    assert all(torch.equal(got[k], sd[k]) for k in sd) and list(got) == list(sd)


def test_motion_generator_windows_path_args(tmp_path):
    path = write_motion_generator_file(
        tmp_path / "g.pt", _small_sd(),
        args={"data_root": pathlib.PureWindowsPath("C:/data/x"), "nested": [pathlib.PurePosixPath("a")]})
    args, _, _ = read_motion_generator_file(path)
    assert args == {"data_root": "C:\\data\\x", "nested": ["a"]}


def test_motion_generator_malicious_args_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "g.pt"
    torch.save({"args": argparse.Namespace(x=_Evil(marker)), "model": _small_sd(), "iter": 1}, path)
    with pytest.raises(CheckpointError, match="refused"):
        read_motion_generator_file(path)
    assert not marker.exists()


def test_motion_generator_wrong_container(tmp_path):
    plain = write_state_dict(tmp_path / "g.pt", {"detector.x": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="not a JoyVASA motion generator.*motion_extractor"):
        read_motion_generator_file(plain)
    truncated = write_motion_generator_file(tmp_path / "t.pt", _small_sd())
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        read_motion_generator_file(truncated)
    assert "jdh-algo/JoyVASA" in str(info.value)


# --------------------------------------------------------------------------- motion template

def _assert_template_equal(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k].dtype == np.float32
        np.testing.assert_array_equal(got[k].reshape(-1), v.reshape(-1))


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("numpy1", [False, True])
def test_template_pickles_numpy1_and_numpy2(tmp_path, protocol, numpy1):
    template = make_motion_template()
    path = write_motion_template(tmp_path / "motion_template.pkl", template,
                                 numpy1_names=numpy1, protocol=protocol)
    assert (b"numpy.core." in path.read_bytes()) == numpy1
    got = read_motion_template(path)
    _assert_template_equal(got, template)
    assert got["mean_exp"].shape == (63,) and got["min_t"].shape == (3,)


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_template_converted_forms(tmp_path, suffix):
    template = make_motion_template()
    got = read_motion_template(write_motion_template(tmp_path / f"t{suffix}", template))
    _assert_template_equal(got, template)


def test_template_numpy_scalars_and_unflattened_arrays(tmp_path):
    template = make_motion_template()
    template["mean_exp"] = template["mean_exp"].reshape(1, 21, 3)
    template["min_scale"] = np.float32(1.25)
    got = read_motion_template(write_motion_template(tmp_path / "t.pkl", template, protocol=2))
    assert got["mean_exp"].shape == (63,) and got["min_scale"].tolist() == [1.25]


def test_template_malicious_pickle_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "motion_template.pkl"
    path.write_bytes(pickle.dumps({"mean_exp": _Evil(marker)}))
    with pytest.raises(CheckpointError, match="refused.*posix.system|refused.*os.system"):
        read_motion_template(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the payload is live: a plain unpickler runs it
    assert marker.exists()


def test_template_problems_are_listed(tmp_path):
    template = make_motion_template()
    del template["std_exp"]
    template["min_t"] = np.zeros(2, np.float32)
    path = write_motion_template(tmp_path / "t.pkl", template)
    with pytest.raises(CheckpointError) as info:
        read_motion_template(path)
    msg = str(info.value)
    assert "std_exp missing" in msg and "min_t has 2 values, expected 3" in msg
    assert set(MOTION_TEMPLATE_REQUIRED) <= set(make_motion_template())
    truncated = write_motion_template(tmp_path / "c.pkl", make_motion_template())
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_motion_template(truncated)
