"""Test tolerances that follow from float32 arithmetic, not from what one machine printed.

Two float32 evaluations of the same math (another memory layout, batch split,
kernel, thread count) round differently; how much depends on which CPU kernel
runs, so a fixed atol measured on one machine fails on another. Two ways to
bound the difference here:

* **Measured against float64** (networks, long chains): run the same
  computation once more with modules and inputs cast to float64 (:func:`to_float64`).
  The float32 result's greatest deviation from it, on this machine, is the
  float32 error *e* of the operation. Any correct float32 evaluation ``actual``
  has an error of the same order, so ``|actual − expected| ≤ e_actual + e ≤
  FACTOR·e`` with FACTOR = 4: the other evaluation may be up to 3× less accurate
  than the measured one (blocked / vectorised sums in another order), and a real
  bug (wrong layout, wrong frame, wrong weight) is still orders of magnitude
  above it. *e* is floored at one rounding of the result, U·max|reference|.
* **Analytic** (short arithmetic): a sum of k float32 products has error at
  most γ_k·Σ|a_i·b_i| with γ_k = k·U/(1 − k·U) (Higham, *Accuracy and
  Stability of Numerical Algorithms*, Thm 3.1 / §3.1), and n successive
  roundings of values of size ≤ m add at most about n·U·m.

U = 2**-24 is float32's unit roundoff (half its machine epsilon).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch

#: float32 unit roundoff: |fl(x) − x| ≤ U·|x|.
U = 2.0 ** -24

#: float64 unit roundoff, for tests of float64 identities.
U64 = 2.0 ** -53

#: Allowed multiple of the measured float32 error between two float32 evaluations (see module doc).
FACTOR = 4.0


def to_float64(obj: Any) -> Any:
    """A float64 copy of modules and floating tensors (nested in dicts, lists, tuples); other values as is.

    Modules are deep-copied, so the float32 original is untouched.
    """
    if isinstance(obj, torch.nn.Module):
        return copy.deepcopy(obj).double()
    if isinstance(obj, torch.Tensor):
        return obj.double() if obj.is_floating_point() else obj
    if isinstance(obj, Mapping):
        return {k: to_float64(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_float64(v) for v in obj)
    return obj


def float32_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    """Greatest |result − reference| of a float32 result against its float64 recomputation,
    floored at one float32 rounding of the result (U·max|reference|)."""
    reference = reference.double()
    deviation = (result.double() - reference).abs().max().item()
    return max(deviation, U * reference.abs().max().item())


def gamma(k: int) -> float:
    """γ_k = k·U/(1 − k·U): relative error bound of a k-term float32 sum or dot product."""
    return k * U / (1 - k * U)


def assert_float32_close(actual: Any, expected: Any, reference: Any, factor: float = FACTOR,
                         name: str = "") -> None:
    """Assert ``max|actual − expected| ≤ factor · float32_error(expected, reference)``.

    actual, expected: float32 results of the same computation done two ways (tensors, or
    mappings / sequences of tensors compared item by item); reference: the same computation
    in float64 (see :func:`to_float64`).
    """
    if isinstance(expected, Mapping):
        for key in expected:
            assert_float32_close(actual[key], expected[key], reference[key], factor, f"{name}[{key}]")
        return
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for i, (a, e, r) in enumerate(zip(actual, expected, reference)):
            assert_float32_close(a, e, r, factor, f"{name}[{i}]")
        return
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    error = float32_error(expected, reference)
    diff = (actual.double() - expected.double()).abs().max().item()
    assert diff <= factor * error, (
        f"{name or 'result'}: max |diff| {diff:.3g} > {factor:g} × float32 error {error:.3g} "
        f"(= {diff / error:.1f} × the float32 error)")
