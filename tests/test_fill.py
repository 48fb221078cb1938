"""The fill rule against the reference known-answer vectors."""
from __future__ import annotations

import json

import numpy as np
import torch

from joyvasa_core import fill
from conftest import PARITY
from helpers_precision import U, U64

VECTORS = json.loads((PARITY / "jvfill_vectors.json").read_text())


def test_uniform01_known_answers():
    for key, want in VECTORS["u01"].items():
        assert fill.key_seed(key) == want["crc32"]
        u = fill.uniform01(key, 1000)
        np.testing.assert_array_equal(u[: len(want["first"])], want["first"])
        # another float64 summation order: at most γ_n·Σ|u| apart
        assert abs(u.sum() - want["sum_first_1000"]) <= len(u) * U64 * want["sum_first_1000"]


def test_unit_known_answers():
    for key, want in VECTORS["unit"].items():
        np.testing.assert_allclose(fill.unit_uniform(key, len(want)), want, rtol=2 * U64, atol=0)


def test_fill_array_known_answers():
    for key, want in VECTORS["fill_value"].items():
        value = fill.fill_array(key, want["shape"], want["dtype"])
        assert value.dtype == np.dtype(want["dtype"])
        np.testing.assert_array_equal(value.ravel()[: len(want["first"])],
                                      np.asarray(want["first"], dtype=value.dtype))
        total = np.abs(value.astype(np.float64)).sum()
        assert abs(value.astype(np.float64).sum() - want["sum_f64"]) <= value.size * U64 * total


def test_spectral_vectors_known_answers():
    for name, want in VECTORS["spectral_uv"].items():
        conv = torch.nn.utils.spectral_norm(torch.nn.Conv2d(512, 512, 3, padding=1))
        sd = fill.fill_state_dict(conv, lambda k: f"{name}.{k}")
        # float64 products rounded to float32: another BLAS may round one ulp (2U) the other way
        np.testing.assert_allclose(sd["weight_u"][:4].numpy(), want["u_first"], rtol=2 * U, atol=0)
        np.testing.assert_allclose(sd["weight_v"][:4].numpy(), want["v_first"], rtol=2 * U, atol=0)
        w = sd["weight_orig"].double().reshape(512, -1)
        u, v = sd["weight_u"].double(), sd["weight_v"].double()
        sigma = float(u @ (w @ v))
        # two float64 dot products of w.shape[1] terms, and u, v one float32 ulp off at most
        bound = (2 * w.shape[1] * U64 + 4 * U) * float(u.abs() @ (w.abs() @ v.abs()))
        assert abs(sigma - want["sigma_f64"]) <= bound


def test_fill_module_uses_stored_key_prefix():
    mlp = torch.nn.Linear(4, 3)
    fill.fill_module_(mlp, lambda k: "module.mlp.0." + k)
    want = fill.fill_array("module.mlp.0.weight", (3, 4))
    np.testing.assert_array_equal(mlp.weight.detach().numpy(), want)
