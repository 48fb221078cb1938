"""The fill rule against the reference known-answer vectors."""
from __future__ import annotations

import json

import numpy as np
import torch

from joyvasa_core import fill
from conftest import PARITY

VECTORS = json.loads((PARITY / "jvfill_vectors.json").read_text())


def test_uniform01_known_answers():
    for key, want in VECTORS["u01"].items():
        assert fill.key_seed(key) == want["crc32"]
        u = fill.uniform01(key, 1000)
        np.testing.assert_array_equal(u[: len(want["first"])], want["first"])
        assert abs(u.sum() - want["sum_first_1000"]) < 1e-9


def test_unit_known_answers():
    for key, want in VECTORS["unit"].items():
        np.testing.assert_allclose(fill.unit_uniform(key, len(want)), want, rtol=0, atol=1e-15)


def test_fill_array_known_answers():
    for key, want in VECTORS["fill_value"].items():
        value = fill.fill_array(key, want["shape"], want["dtype"])
        assert value.dtype == np.dtype(want["dtype"])
        np.testing.assert_array_equal(value.ravel()[: len(want["first"])],
                                      np.asarray(want["first"], dtype=value.dtype))
        assert abs(value.astype(np.float64).sum() - want["sum_f64"]) < 1e-6


def test_spectral_vectors_known_answers():
    for name, want in VECTORS["spectral_uv"].items():
        conv = torch.nn.utils.spectral_norm(torch.nn.Conv2d(512, 512, 3, padding=1))
        sd = fill.fill_state_dict(conv, lambda k: f"{name}.{k}")
        np.testing.assert_allclose(sd["weight_u"][:4].numpy(), want["u_first"], atol=1e-7)
        np.testing.assert_allclose(sd["weight_v"][:4].numpy(), want["v_first"], atol=1e-7)
        w = sd["weight_orig"].double().reshape(512, -1)
        sigma = float(sd["weight_u"].double() @ (w @ sd["weight_v"].double()))
        assert abs(sigma - want["sigma_f64"]) < 1e-5


def test_fill_module_uses_stored_key_prefix():
    mlp = torch.nn.Linear(4, 3)
    fill.fill_module_(mlp, lambda k: "module.mlp.0." + k)
    want = fill.fill_array("module.mlp.0.weight", (3, 4))
    np.testing.assert_array_equal(mlp.weight.detach().numpy(), want)
