"""The parity runner itself: subsets, pass/fail logic, the CLI and its JSON report."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import PARITY
from helpers_precision import U
from joyvasa_core.parity.__main__ import main
from joyvasa_core.parity.fixture import Fixture, list_fixtures, parse_subset
from joyvasa_core.parity.runner import compare, run_fixture


def test_parse_subset():
    assert parse_subset("[:, ::3, 2, 1:7:2]") == (slice(None), slice(None, None, 3), 2, slice(1, 7, 2))
    x = torch.arange(2 * 9 * 4).reshape(2, 9, 4)
    assert x[parse_subset("[:, ::3, ::2]")].shape == (2, 3, 2)
    with pytest.raises(ValueError):
        parse_subset("[__import__('os')]")


def test_compare_uses_atol_plus_rtol():
    ref = torch.tensor([1.0, 100.0])
    assert compare(ref + torch.tensor([5e-5, 5e-3]), ref, 1e-4, 1e-4)[1]
    err, ok = compare(ref + torch.tensor([5e-4, 0.0]), ref, 1e-4, 1e-4)
    assert not ok and err == pytest.approx(5e-4, abs=U)          # 1 + 5e-4 rounded to float32
    assert not compare(torch.tensor([float("nan"), 1.0]), torch.tensor([0.0, 1.0]), 1, 1)[1]


def copy_fixture(tmp_path, name, rename=None):
    dst = tmp_path / "fx"
    dst.mkdir(exist_ok=True)
    target = rename or name
    meta = json.loads((PARITY / f"{name}.json").read_text())
    meta["fixture"] = target
    (dst / f"{target}.json").write_text(json.dumps(meta))
    shutil.copy(PARITY / f"{name}.safetensors", dst / f"{target}.safetensors")
    return dst


def test_cli_passes_and_reports(tmp_path):
    folder = copy_fixture(tmp_path, "stitching_retargeting")
    report = tmp_path / "report.json"
    assert main([str(folder), "--json", str(report)]) == 0
    data = json.loads(report.read_text())["fixtures"]["stitching_retargeting"]
    assert set(data) == set(Fixture.open(folder, "stitching_retargeting").names("output"))
    assert all(v["ok"] and v["max_abs_err"] < 1e-4 for v in data.values())


def test_a_wrong_reference_fails(tmp_path):
    folder = copy_fixture(tmp_path, "stitching_retargeting")
    path = folder / "stitching_retargeting.safetensors"
    tensors = load_file(str(path))
    tensors["stitching"] = tensors["stitching"] + 1e-3
    save_file(tensors, str(path))
    report = tmp_path / "report.json"
    assert main([str(folder), "--json", str(report)]) == 1
    data = json.loads(report.read_text())["fixtures"]["stitching_retargeting"]
    assert not data["stitching"]["ok"] and data["retarget_lip"]["ok"]


def test_unknown_fixture_is_a_failure_not_a_skip(tmp_path):
    folder = copy_fixture(tmp_path, "stitching_retargeting", rename="not_a_known_code_path")
    results = run_fixture(Fixture.open(folder, "not_a_known_code_path"), torch.device("cpu"))
    assert results and not any(r.ok for r in results)
    assert main([str(folder)]) == 1


@pytest.mark.slow
def test_every_reference_fixture_passes(tmp_path):
    """``python -m joyvasa_core.parity tests/data/parity`` exits 0 on the whole folder."""
    report = tmp_path / "report.json"
    assert main([str(PARITY), "--json", str(report)]) == 0
    data = json.loads(report.read_text())["fixtures"]
    assert set(data) == set(list_fixtures(PARITY))
    assert all(v["ok"] for outputs in data.values() for v in outputs.values())
