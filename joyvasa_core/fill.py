"""Deterministic synthetic weights: the reference "jvfill" rule, re-implemented.

Every value depends only on the state-dict key (as stored in the checkpoint
file) and the element index, so the fixtures in ``tests/data/parity`` can be
reproduced without the official weights. The rule itself is documented in
``tests/data/REFERENCE.md`` (section 1); known answers are in ``parity/jvfill_vectors.json``.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable

import numpy as np
import torch

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xFF51AFD7ED558CCD
_MIX2 = 0xC4CEB9FE1A85EC53
_STATE_BUFFERS = ("running_mean", "running_var", "num_batches_tracked", "weight_u", "weight_v")


def key_seed(key: str) -> int:
    """Unsigned CRC-32 of the UTF-8 key."""
    return zlib.crc32(key.encode("utf-8")) & 0xFFFFFFFF


def uniform01(key: str, numel: int) -> np.ndarray:
    """``float64[numel]`` in [0, 1): an fmix64 hash of (seed(key), element index)."""
    x = np.arange(numel, dtype=np.uint64) + np.uint64((key_seed(key) * _GOLDEN) & _MASK64)
    shift = np.uint64(33)
    with np.errstate(over="ignore"):
        for mult in (_MIX1, _MIX2):
            x ^= x >> shift
            x *= np.uint64(mult)
        x ^= x >> shift
    return (x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def unit_uniform(key: str, numel: int) -> np.ndarray:
    """Zero-mean, unit-variance uniform values ``(2u - 1) * sqrt(3)``, float64."""
    return (2.0 * uniform01(key, numel) - 1.0) * math.sqrt(3.0)


def fill_array(key: str, shape: Iterable[int], dtype: str | np.dtype = "float32") -> np.ndarray:
    """Value of one state-dict entry ``key`` of ``shape`` under the fill rule."""
    shape = tuple(int(d) for d in shape)
    numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    u = uniform01(key, numel)
    if key.endswith("running_var"):
        value = 1.0 + 0.5 * u
    elif key.endswith("running_mean"):
        value = 0.1 * (2.0 * u - 1.0)
    elif len(shape) == 1 and key.endswith(".weight"):
        value = 1.0 + 0.1 * (2.0 * u - 1.0)
    elif len(shape) >= 2:
        fan_in = int(np.prod(shape[1:], dtype=np.int64))
        value = (2.0 * u - 1.0) * math.sqrt(3.0) / math.sqrt(fan_in)
    else:
        value = 0.02 * (2.0 * u - 1.0) * math.sqrt(3.0)
    return value.reshape(shape).astype(np.dtype(dtype))


def spectral_vectors(weight_orig: np.ndarray, key_v: str) -> tuple[np.ndarray, np.ndarray]:
    """Spectral-norm ``(u [out], v [in*kh*kw])`` float32: one power step from a hashed v."""
    w = np.asarray(weight_orig, dtype=np.float64).reshape(weight_orig.shape[0], -1)
    v = unit_uniform(key_v, w.shape[1])
    v /= np.linalg.norm(v)
    u = w @ v
    u /= np.linalg.norm(u)
    return u.astype(np.float32), v.astype(np.float32)


def fill_layout(layout: Iterable[tuple[str, Iterable[int], str]]) -> dict[str, np.ndarray]:
    """Fill ``(key, shape, dtype)`` entries; spectral-norm u/v pairs follow their weight."""
    entries = [(k, tuple(s), str(d)) for k, s, d in layout]
    out = {k: fill_array(k, s, d) for k, s, d in entries}
    for key, _, dtype in entries:
        if key.endswith(".weight_u"):
            base = key[: -len("_u")]
            u, v = spectral_vectors(out[base + "_orig"], base + "_v")
            out[key] = u.astype(dtype)
            out[base + "_v"] = v.astype(out[base + "_v"].dtype)
    return out


def fillable_keys(module: torch.nn.Module) -> list[str]:
    """Parameters plus the buffers a trained checkpoint carries (BN stats, spectral u/v)."""
    params = {name for name, _ in module.named_parameters()}
    return [k for k in module.state_dict()
            if k in params or k.rsplit(".", 1)[-1] in _STATE_BUFFERS]


def fill_state_dict(module: torch.nn.Module,
                    stored_key: Callable[[str], str] = lambda k: k) -> dict[str, torch.Tensor]:
    """Synthetic state dict for ``module``, keyed like ``module.state_dict()``.

    ``stored_key`` maps a module key to the key as stored in the checkpoint file
    (for example ``lambda k: "module." + k`` for the stitching file); the fill
    values are seeded by the stored key.
    """
    sd = module.state_dict()
    keys = fillable_keys(module)
    layout = [(stored_key(k), tuple(sd[k].shape), str(sd[k].dtype).replace("torch.", ""))
              for k in keys]
    values = fill_layout(layout)
    return {k: torch.from_numpy(np.ascontiguousarray(values[stored_key(k)])) for k in keys}


def fill_module_(module: torch.nn.Module,
                 stored_key: Callable[[str], str] = lambda k: k) -> torch.nn.Module:
    """Overwrite ``module``'s fillable entries in place with the fill rule; returns it."""
    module.load_state_dict(fill_state_dict(module, stored_key), strict=False)
    return module
