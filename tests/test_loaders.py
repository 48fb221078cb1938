"""Building and loading the LivePortrait bundle (joyvasa_core.loaders)."""
from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch

from conftest import PARITY, SCHEMA
from helpers_checkpoints import (TINY_LIVEPORTRAIT, filled_liveportrait, tiny_backbone,
                                 write_official_tree, write_state_dict)
from joyvasa_core import config
from joyvasa_core.checkpoints import CheckpointError, layout_of
from joyvasa_core.fill import fill_layout
from joyvasa_core.loaders import (BASE_NETWORKS, LivePortraitModels, build_liveportrait,
                                  load_liveportrait)
from joyvasa_core.model_files import ModelFilesError
from joyvasa_core.parity.fixture import Fixture


@pytest.fixture()
def tiny():
    with tiny_backbone():
        yield TINY_LIVEPORTRAIT


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k].to(sb[k].dtype), sb[k]), k


def test_full_size_layouts_equal_the_schema():
    with torch.device("meta"):
        models = build_liveportrait()
    for slot in BASE_NETWORKS:
        entries = json.loads((SCHEMA / f"{slot}.json").read_text())["entries"]
        expected = [(e["key"], tuple(e["shape"]), e["dtype"]) for e in entries]
        got = [(k, shape, str(dtype).removeprefix("torch."))
               for k, (shape, dtype) in layout_of(getattr(models, slot)).items()]
        assert got == expected, slot
    parts = json.loads((SCHEMA / "stitching_retargeting_module.json").read_text())["parts"]
    for part, spec in parts.items():
        assert config.STITCHING_FILE_PARTS[part] == spec["loaded_as"]
        expected = [(e["loaded_key"], tuple(e["shape"])) for e in spec["entries"]]
        got = [(k, shape) for k, (shape, _) in layout_of(getattr(models, spec["loaded_as"])).items()]
        assert got == expected, part


def test_build_overrides(tiny):
    models = build_liveportrait(tiny)
    assert isinstance(models, LivePortraitModels) and not models.training
    assert models.lip.state_dict()["mlp.0.weight"].shape == (8, 65)
    assert models.warping_module.dense_motion_network is not None
    with pytest.raises(ValueError, match="unknown network"):
        build_liveportrait({"generator": {}})


@pytest.mark.parametrize("layout", ["official", "kijai"])
def test_load_official_and_kijai_layouts(tmp_path, tiny, layout):
    reference = filled_liveportrait(tiny)
    root = tmp_path / ("pretrained_weights" if layout == "official" else "kijai")
    written = write_official_tree(root, reference, layout=layout)
    extra = [root] if layout == "kijai" else []
    models = load_liveportrait(tmp_path / "pretrained_weights", extra_dirs=extra,
                               config_overrides=tiny)
    _assert_same_weights(models, reference)
    assert models.files == written
    assert not models.training and not any(p.requires_grad for p in models.parameters())
    assert models.device == torch.device("cpu") and models.dtype == torch.float32


def test_load_dtype(tmp_path, tiny):
    reference = filled_liveportrait(tiny)
    write_official_tree(tmp_path, reference)
    models = load_liveportrait(tmp_path, device="cpu", dtype=torch.float16, config_overrides=tiny)
    assert models.dtype == torch.float16
    assert models.spade_generator.state_dict()["G_middle_0.conv_0.weight_u"].dtype == torch.float16
    bn = [v for k, v in models.state_dict().items() if k.endswith("num_batches_tracked")]
    assert bn and all(v.dtype == torch.int64 for v in bn)
    _assert_same_weights(reference.half(), models)


def test_bf16_on_the_cpu_is_the_fast_path_w_and_g_only(tmp_path, tiny):
    """CPU bf16: W and G (per-frame convolutions) in bf16; F, M and the MLPs float32, so the
    appearance and keypoints keep full precision. On other devices bf16 is all of it."""
    reference = filled_liveportrait(tiny)
    write_official_tree(tmp_path, reference)
    models = load_liveportrait(tmp_path, device="cpu", dtype=torch.bfloat16, config_overrides=tiny)
    for name in ("appearance_feature_extractor", "motion_extractor", "stitching"):
        kept, original = getattr(models, name).state_dict(), getattr(reference, name).state_dict()
        assert all(torch.equal(kept[k], original[k]) for k in original), name   # not rounded
    dtypes = {name: next(getattr(models, name).parameters()).dtype
              for name in ("appearance_feature_extractor", "motion_extractor", "warping_module",
                           "spade_generator", "stitching", "lip", "eye")}
    assert dtypes == {"appearance_feature_extractor": torch.float32,
                      "motion_extractor": torch.float32, "warping_module": torch.bfloat16,
                      "spade_generator": torch.bfloat16, "stitching": torch.float32,
                      "lip": torch.float32, "eye": torch.float32}
    crops = torch.rand(2, 3, 256, 256)
    feature, info = models.encode(crops)                    # F and M in float32
    assert feature.dtype == torch.float32 and info.kp.dtype == torch.float32
    from joyvasa_core.render import render
    frames = render(models.warping_module, models.spade_generator, feature, info.transform(),
                    info.transform() + 0.01)
    assert frames.dtype == torch.bfloat16 and torch.isfinite(frames.float()).all()


def test_animal_variant_uses_animal_bases_and_human_stitching(tmp_path, tiny):
    human = filled_liveportrait(tiny)
    animal = filled_liveportrait(tiny, offset=1.0)
    write_official_tree(tmp_path, human)
    animal_files = write_official_tree(tmp_path, animal, variant="animal", stitching=False)
    assert animal_files["warping_module"].parts[-3] == "liveportrait_animals"
    models = load_liveportrait(tmp_path, "animal", config_overrides=tiny)
    assert models.variant == "animal"
    for slot in BASE_NETWORKS:
        _assert_same_weights(getattr(models, slot), getattr(animal, slot))
    for name in ("stitching", "lip", "eye"):
        _assert_same_weights(getattr(models, name), getattr(human, name))


def test_missing_file_names_expected_path(tmp_path, tiny):
    paths = write_official_tree(tmp_path, filled_liveportrait(tiny))
    paths["spade_generator"].unlink()
    with pytest.raises(ModelFilesError) as info:
        load_liveportrait(tmp_path, config_overrides=tiny)
    assert str(tmp_path / "liveportrait/base_models/spade_generator.pth") in str(info.value)
    assert [m.slot for m in info.value.missing] == ["spade_generator"]


def test_wrong_shape_is_reported(tmp_path, tiny):
    write_official_tree(tmp_path, filled_liveportrait(tiny))
    other = dict(tiny, appearance_feature_extractor=dict(
        tiny["appearance_feature_extractor"], block_expansion=8))
    with pytest.raises(CheckpointError) as info:
        load_liveportrait(tmp_path, config_overrides=other)
    msg = str(info.value)
    assert "appearance_feature_extractor.pth" in msg and "shape mismatches" in msg
    assert "different model version or config" in msg


def test_wrong_slot_is_reported(tmp_path, tiny):
    reference = filled_liveportrait(tiny)
    paths = write_official_tree(tmp_path, reference)
    write_state_dict(paths["motion_extractor"], reference.spade_generator.state_dict())
    with pytest.raises(CheckpointError) as info:
        load_liveportrait(tmp_path, config_overrides=tiny)
    msg = str(info.value)
    assert str(paths["motion_extractor"]) in msg
    assert "look like the spade_generator file" in msg
    assert "liveportrait/base_models/motion_extractor.pth" in msg  # where the right file goes


def test_swapped_stitching_parts_are_reported(tmp_path, tiny):
    reference = filled_liveportrait(tiny)
    path = write_official_tree(tmp_path, reference)["stitching_retargeting_module"]
    content = torch.load(path, weights_only=True)
    content["retarget_mouth"], content["retarget_eye"] = content["retarget_eye"], content["retarget_mouth"]
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=r"stitching_retargeting_module\[retarget_mouth\]"):
        load_liveportrait(tmp_path, config_overrides=tiny)


def test_truncated_file_is_reported(tmp_path, tiny):
    paths = write_official_tree(tmp_path, filled_liveportrait(tiny))
    data = paths["warping_module"].read_bytes()
    paths["warping_module"].write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_liveportrait(tmp_path, config_overrides=tiny)
    assert str(paths["warping_module"]) in str(info.value)


def test_loaded_models_compute_like_the_reference(tmp_path, tiny):
    reference = filled_liveportrait(tiny)
    write_official_tree(tmp_path, reference, layout="kijai")
    models = load_liveportrait(tmp_path, config_overrides=tiny)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference.appearance_feature_extractor(x)
        got = models.appearance_feature_extractor(x)
        mlp_in = torch.rand(2, 126)
        assert torch.equal(models.stitching(mlp_in), reference.stitching(mlp_in))
    assert torch.equal(got, expected)


def test_official_files_written_from_the_schema_reproduce_parity(tmp_path, tiny):
    """F and the stitching file written key-by-key from the schema (not from our modules),
    full size, in the official containers: they load and reproduce the official outputs."""
    def filled(entries, key="key"):
        values = fill_layout([(e["key"], e["shape"], e["dtype"]) for e in entries])
        return OrderedDict((e[key], torch.from_numpy(values[e["key"]])) for e in entries)

    small = filled_liveportrait(tiny)  # M, W, G stay tiny
    paths = write_official_tree(tmp_path, small)
    f_entries = json.loads((SCHEMA / "appearance_feature_extractor.json").read_text())["entries"]
    torch.save(filled(f_entries), paths["appearance_feature_extractor"])
    parts = json.loads((SCHEMA / "stitching_retargeting_module.json").read_text())["parts"]
    torch.save({part: filled(spec["entries"]) for part, spec in parts.items()},
               paths["stitching_retargeting_module"])

    full = {k: v for k, v in tiny.items()
            if k in ("motion_extractor", "warping_module", "spade_generator")}
    models = load_liveportrait(tmp_path, config_overrides=full)

    fx = Fixture.open(PARITY, "stitching_retargeting")
    with torch.no_grad():
        for name in ("stitching", "lip", "eye"):
            out = getattr(models, name)(fx.tensor(f"mlp_{name}.in"))
            torch.testing.assert_close(out, fx.tensor(f"mlp_{name}.out"), atol=1e-5, rtol=1e-5)
        fx = Fixture.open(PARITY, "appearance_feature_extractor")
        feature = models.appearance_feature_extractor(fx.tensor("image"))
    reference, subset = fx.reference("feature_3d")
    torch.testing.assert_close(feature[subset], reference, atol=1e-4, rtol=1e-4)
