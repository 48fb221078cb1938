"""Safe, validated reading of every official checkpoint file.

Checkpoints are untrusted input. Nothing here unpickles arbitrary objects:

* ``.pth`` / ``.pt`` / ``.bin`` state dicts go through ``torch.load(weights_only=True)``;
* ``.safetensors`` through safetensors;
* the JoyVASA motion-generator ``.pt`` additionally allows exactly
  ``argparse.Namespace`` and the ``pathlib`` path classes (its ``args.data_root``),
  the latter mapped to pure paths so a file written on Linux reads on Windows;
* the motion-template ``.pkl`` goes through a restricted unpickler that knows
  numpy arrays, dtypes and scalars (numpy 1.x and 2.x module paths) and nothing else.

The file type is sniffed from the first bytes, not taken from the suffix, so a
Git LFS pointer, a saved web page or a truncated download is reported as such.
Every problem raises :class:`CheckpointError` naming the file, the problem and the fix.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import config
from .errors import CheckpointError
from .model_files import download_hint

#: ``key -> (shape, dtype)``: the layout a state dict must have.
Layout = Mapping[str, tuple[tuple[int, ...], torch.dtype]]

#: Sub-dicts of the official stitching file, in file order.
STITCHING_FILE_PARTS = tuple(config.STITCHING_FILE_PARTS)
#: The DDP prefix every key of the official stitching sub-dicts carries.
DDP_PREFIX = "module."

#: Template entries the motion decoder reads, with their (flattened) sizes.
MOTION_TEMPLATE_REQUIRED: dict[str, int] = {
    "mean_exp": 63, "std_exp": 63,
    "min_scale": 1, "max_scale": 1, "min_t": 3, "max_t": 3,
    "min_pitch": 1, "max_pitch": 1, "min_yaw": 1, "max_yaw": 1, "min_roll": 1, "max_roll": 1,
}

# Top-level key components (before the first '.') that identify a known file;
# used only to tell the user which file landed in the wrong place.
_SLOT_SIGNATURES: dict[str, frozenset[str]] = {
    "appearance_feature_extractor": frozenset({"first", "down_blocks", "second", "resblocks_3d"}),
    "motion_extractor": frozenset({"detector"}),
    "warping_module": frozenset({"dense_motion_network", "third", "fourth"}),
    "spade_generator": frozenset({"fc", "G_middle_0", "G_middle_1", "G_middle_2", "G_middle_3",
                                  "G_middle_4", "G_middle_5", "up_0", "up_1", "conv_img"}),
    "stitching_retargeting_module": frozenset({"mlp"}),
    "motion_generator": frozenset({"audio_encoder", "audio_feature_map", "denoising_net",
                                   "diffusion_sched", "null_audio_feat", "start_audio_feat",
                                   "start_motion_feat"}),
    "audio encoder (HuBERT / wav2vec2 weights)": frozenset({
        "feature_extractor", "feature_projection", "encoder", "masked_spec_embed"}),
}
# Input width of the first stitching MLP layer -> which of the three MLPs it is.
_STITCHING_INPUT_SIZES = {126: "retarget_shoulder (stitching)", 65: "retarget_mouth (lip)",
                          66: "retarget_eye (eye)"}


# --------------------------------------------------------------------------- helpers

def _fix(slot: str | None, fix: str | None) -> str:
    """The sentence telling the user how to repair a bad file of ``slot``."""
    if fix:
        return fix
    if slot:
        return download_hint(slot)
    return "Replace it with the original download."


def _error(path: str | Path, problem: str, slot: str | None, fix: str | None) -> CheckpointError:
    what = f" ({slot})" if slot else ""
    return CheckpointError(f"{Path(path)}{what}: {problem}\nFix: {_fix(slot, fix)}")


def _sniff(path: Path) -> str:
    """Container kind from the first bytes: zip, pickle, safetensors, lfs, html, empty, unknown."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head:
        return "empty"
    if head.startswith(b"PK"):
        return "zip"
    if head.startswith(b"\x80"):
        return "pickle"
    if head.startswith(b"version https://git-lfs"):
        return "lfs"
    if head.lstrip().lower().startswith((b"<!doctype", b"<html")):
        return "html"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return "unknown"


def _check_readable(path: Path, slot: str | None, fix: str | None) -> str:
    """Raise for a missing/non-file/placeholder path; return its sniffed kind."""
    if not path.exists():
        raise _error(path, "file not found.", slot, fix)
    if not path.is_file():
        raise _error(path, "is a folder, not a checkpoint file.", slot, fix)
    kind = _sniff(path)
    if kind == "empty":
        raise _error(path, "the file is empty (an interrupted download?).", slot, fix)
    if kind == "lfs":
        raise _error(path, "is a Git LFS pointer, not the weights (cloned without git-lfs). "
                     "Run `git lfs pull` in that clone or download the file directly.", slot, fix)
    if kind == "html":
        raise _error(path, "is a web page, not a checkpoint (a failed browser download?).",
                     slot, fix)
    return kind


def _torch_load(path: Path, slot: str | None, fix: str | None) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into a CheckpointError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():  # e.g. "pickle data was truncated"
            raise _error(path, f"cannot be read, the file is corrupt or truncated ({exc}).",
                         slot, fix) from exc
        reason = str(exc).strip().splitlines()
        detail = next((line for line in reason if "GLOBAL" in line or "Unsupported" in line),
                      reason[0] if reason else "")
        if "argparse.Namespace" in detail:
            raise _error(path, "is not a state dict: it looks like the JoyVASA motion generator "
                         "(motion_generator/*.pt, it holds training args). Check that the file "
                         "is in the right place.", slot, fix) from exc
        raise _error(path, "refused to load: the file holds Python objects other than tensors "
                     f"and is not a plain checkpoint ({detail.strip()}). It may be malicious; "
                     "do not load it with weights_only=False.", slot, fix) from exc
    except Exception as exc:  # zip/EOF/storage errors: a damaged file
        raise _error(path, f"cannot be read, the file is corrupt or truncated ({exc}).",
                     slot, fix) from exc


def _load_safetensors(path: Path, slot: str | None, fix: str | None) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise _error(path, f"cannot be read, the safetensors file is corrupt or truncated ({exc}).",
                     slot, fix) from exc


def _tensor_dict(obj: Any, path: Path, slot: str | None, fix: str | None,
                 what: str = "a state dict") -> dict[str, torch.Tensor]:
    """Check that ``obj`` is a flat ``str -> Tensor`` mapping; explain what it is otherwise."""
    if not isinstance(obj, Mapping):
        raise _error(path, f"holds a {type(obj).__name__}, not {what}.", slot, fix)
    bad = {k: v for k, v in obj.items() if not (isinstance(k, str) and torch.is_tensor(v))}
    if bad:
        keys = set(obj)
        if set(STITCHING_FILE_PARTS) <= keys:
            looks = "the stitching/retargeting file (stitching_retargeting_module)"
        elif {"args", "model"} <= keys:
            looks = "the JoyVASA motion generator (motion_generator/*.pt)"
        else:
            key = next(iter(bad))
            looks = f"a container with a {type(bad[key]).__name__} under {key!r}"
        raise _error(path, f"is not {what}: it looks like {looks}. Check that the file is "
                     "in the right place.", slot, fix)
    return dict(obj)


# --------------------------------------------------------------------------- state dicts

def read_state_dict(path: str | Path, slot: str | None = None,
                    fix: str | None = None) -> dict[str, torch.Tensor]:
    """Read a flat state dict from a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file.

    Tensors come back on the CPU in their stored dtype. ``slot`` (a model-file
    slot name such as ``"warping_module"``) and ``fix`` only shape error messages.
    """
    path = Path(path)
    kind = _check_readable(path, slot, fix)
    if kind == "safetensors":
        return _load_safetensors(path, slot, fix)
    return _tensor_dict(_torch_load(path, slot, fix), path, slot, fix)


def layout_of(source: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``key -> (shape, dtype)`` of a module's state dict (or of a state dict)."""
    sd = source.state_dict() if isinstance(source, nn.Module) else source
    return {k: (tuple(v.shape), v.dtype) for k, v in sd.items()}


def guess_slot(state_dict: Mapping[str, Any]) -> str | None:
    """Which known model file a state dict looks like (best effort), or None."""
    keys = [k[len(DDP_PREFIX):] if k.startswith(DDP_PREFIX) else k for k in state_dict]
    heads = {k.split(".", 1)[0] for k in keys}
    if not heads:
        return None
    # Score: share of the file's top-level names the slot explains, then the Jaccard index.
    best, score = None, (0.0, 0.0)
    for slot, signature in _SLOT_SIGNATURES.items():
        common = len(heads & signature)
        s = (common / len(heads), common / len(heads | signature))
        if s > score:
            best, score = slot, s
    if score[0] < 0.5:
        return None
    if best == "stitching_retargeting_module":
        first = state_dict.get("mlp.0.weight", state_dict.get(DDP_PREFIX + "mlp.0.weight"))
        if first is not None and getattr(first, "ndim", 0) == 2:
            part = _STITCHING_INPUT_SIZES.get(int(first.shape[1]))
            if part:
                return f"{best} part {part}"
    return best


def _same_kind(a: torch.dtype, b: torch.dtype) -> bool:
    """float vs float (any precision) is loadable; otherwise the dtypes must match."""
    return a == b or (a.is_floating_point and b.is_floating_point)


def validate_state_dict(sd: Mapping[str, torch.Tensor], expected: Layout, path: str | Path,
                        slot: str, fix: str | None = None, max_listed: int = 12) -> None:
    """Raise :class:`CheckpointError` unless ``sd`` has exactly the ``expected`` layout.

    ``slot`` names the place the file was loaded for (a model-file slot, optionally
    with a sub-part: ``"stitching_retargeting_module[retarget_eye]"``).
    Every missing key, unexpected key, shape mismatch and incompatible dtype is
    collected (the first ``max_listed`` of each kind are printed, with counts).
    Float tensors of another precision are accepted (they are cast on load).
    When the keys do not match, the message says which known file the keys look like.
    """
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong_shape = [f"{k}: file {tuple(sd[k].shape)}, expected {tuple(expected[k][0])}"
                   for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k][0])]
    wrong_dtype = [f"{k}: file {sd[k].dtype}, expected {expected[k][1]}"
                   for k in expected if k in sd and not _same_kind(sd[k].dtype, expected[k][1])]
    if not (missing or unexpected or wrong_shape or wrong_dtype):
        check_finite(sd, path, slot, fix, max_listed)
        return
    lines = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", wrong_shape), ("dtype mismatches", wrong_dtype)):
        if items:
            shown = ", ".join(items[:max_listed])
            more = f" ... and {len(items) - max_listed} more" if len(items) > max_listed else ""
            lines.append(f"  {len(items)} {title}: {shown}{more}")
    problem = f"does not match the {slot} layout:\n" + "\n".join(lines)
    if missing or unexpected:
        looks = guess_slot(sd)
        if looks and not looks.startswith(slot.split("[")[0]):
            problem += (f"\n  The keys look like the {looks} file: it was probably put in "
                        f"the {slot} place by mistake.")
    elif wrong_shape:
        problem += "\n  The keys match but the sizes do not: a different model version or config."
    raise _error(path, problem, slot, fix)


def check_finite(sd: Mapping[str, torch.Tensor], path: str | Path, slot: str,
                 fix: str | None = None, max_listed: int = 12) -> None:
    """Raise :class:`CheckpointError` naming the file and the tensors that hold NaN or
    infinite values (a damaged file: such weights would render black or NaN frames)."""
    bad = [k for k, v in sd.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" ... and {len(bad) - max_listed} more" if len(bad) > max_listed else ""
        raise _error(path, f"{len(bad)} tensor(s) hold NaN or infinite values: "
                           f"{', '.join(bad[:max_listed])}{more}. The file is damaged.", slot, fix)


# --------------------------------------------------------------------------- stitching

_KIJAI_STITCHING_KEY = re.compile(r"^(%s)_module\.(.+)$" % "|".join(STITCHING_FILE_PARTS))


def read_stitching_file(path: str | Path, fix: str | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """The three stitching/retargeting MLP state dicts, keyed by official part name.

    Accepts the official ``.pth`` (``{'retarget_shoulder'|'retarget_mouth'|'retarget_eye':
    state dict with 'module.'-prefixed keys}``; exactly the leading ``module.`` is
    stripped) and Kijai's flat safetensors (``'<part>_module.<key>'``). Returns
    ``{'retarget_shoulder': {'mlp.0.weight': ...}, 'retarget_mouth': ..., 'retarget_eye': ...}``.
    """
    slot = "stitching_retargeting_module"
    path = Path(path)
    kind = _check_readable(path, slot, fix)
    obj: Any = _load_safetensors(path, slot, fix) if kind == "safetensors" else _torch_load(path, slot, fix)
    if not isinstance(obj, Mapping):
        raise _error(path, f"holds a {type(obj).__name__}, not the stitching dict.", slot, fix)

    parts: dict[str, dict[str, torch.Tensor]] = {}
    if any(p in obj for p in STITCHING_FILE_PARTS):  # official nested layout
        for part in STITCHING_FILE_PARTS:
            if part not in obj:
                continue
            sub = _tensor_dict(obj[part], path, slot, fix, what=f"a state dict under {part!r}")
            parts[part] = {k[len(DDP_PREFIX):] if k.startswith(DDP_PREFIX) else k: v
                           for k, v in sub.items()}
        extra = sorted(set(obj) - set(STITCHING_FILE_PARTS))
    else:  # Kijai's flat layout
        flat = _tensor_dict(obj, path, slot, fix, what="a stitching state dict")
        extra = []
        for key, value in flat.items():
            m = _KIJAI_STITCHING_KEY.match(key)
            if m:
                parts.setdefault(m.group(1), {})[m.group(2)] = value
            else:
                extra.append(key)
        if not parts:
            looks = guess_slot(flat)
            hint = f" The keys look like the {looks} file." if looks else ""
            hint += " Check that the file is in the right place." if looks else ""
            raise _error(path, "has none of the stitching parts "
                         f"{', '.join(STITCHING_FILE_PARTS)}.{hint}", slot, fix)
    parts = {p: parts[p] for p in STITCHING_FILE_PARTS if p in parts}  # file order
    absent = [p for p in STITCHING_FILE_PARTS if p not in parts]
    if absent or extra:
        problem = []
        if absent:
            problem.append(f"missing part(s) {', '.join(absent)}")
        if extra:
            problem.append(f"unexpected entries {', '.join(extra[:12])}")
        raise _error(path, "is not a complete stitching/retargeting file: "
                     + "; ".join(problem) + ".", slot, fix)
    return parts


# --------------------------------------------------------------------------- motion generator

def _path_globals() -> list[tuple[type, str]]:
    """``pathlib`` classes as pickled on any OS/Python, mapped to pure (never-touching-disk) paths."""
    out = []
    for module in ("pathlib", "pathlib._local"):
        for name, cls in (("PosixPath", pathlib.PurePosixPath),
                          ("PurePosixPath", pathlib.PurePosixPath),
                          ("WindowsPath", pathlib.PureWindowsPath),
                          ("PureWindowsPath", pathlib.PureWindowsPath)):
            out.append((cls, f"{module}.{name}"))
    return out


def _plain(value: Any) -> Any:
    """Path objects -> str; containers recursively; everything else unchanged."""
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def read_motion_generator_file(path: str | Path, fix: str | None = None
                               ) -> tuple[dict[str, Any], dict[str, torch.Tensor], int | None]:
    """Read a JoyVASA motion-generator checkpoint safely.

    The file is ``torch.save({'args': argparse.Namespace, 'model': state dict, 'iter': int})``.
    Only ``argparse.Namespace`` and ``pathlib`` paths are allowed beyond tensors.
    Returns ``(args, state_dict, iter)``: ``args`` as a plain dict (paths as str),
    the ``'model'`` state dict unchanged (including ``denoising_net.TE.pe`` if
    present), and ``iter`` (None if the file has none).
    """
    slot = "motion_generator"
    path = Path(path)
    kind = _check_readable(path, slot, fix)
    if kind == "safetensors":
        raise _error(path, "is a safetensors file; the motion generator must be the official "
                     "torch .pt file with 'args', 'model' and 'iter'.", slot, fix)
    if torch.__version__ < "2.6":  # safe_globals with (class, "pickled.name") pairs
        raise _error(path, f"reading it safely needs torch >= 2.6 (found {torch.__version__}).",
                     slot, "Upgrade torch (pip install -U torch) and try again.")
    with torch.serialization.safe_globals([argparse.Namespace, *_path_globals()]):
        obj = _torch_load(path, slot, fix)
    if not (isinstance(obj, Mapping) and "model" in obj and "args" in obj):
        found = sorted(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        looks = guess_slot(obj) if isinstance(obj, Mapping) else None
        hint = f" It looks like the {looks} file." if looks else ""
        raise _error(path, "is not a JoyVASA motion generator: expected a dict with 'args', "
                     f"'model' and 'iter', found {found}.{hint}", slot, fix)
    args = obj["args"]
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if not isinstance(args, Mapping):
        raise _error(path, f"'args' is a {type(args).__name__}, not an argparse.Namespace.",
                     slot, fix)
    state_dict = _tensor_dict(obj["model"], path, slot, fix, what="a state dict under 'model'")
    it = obj.get("iter")
    return _plain(dict(args)), state_dict, (int(it) if it is not None else None)


def peek_motion_generator_args(path: str | Path) -> dict[str, Any] | None:
    """The ``args`` of a motion-generator checkpoint, its weights left on disk (memory-mapped,
    same allow-list as :func:`read_motion_generator_file`), or None when the file cannot be
    read that way: the full read then says why."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace, *_path_globals()]):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        args = obj["args"]
        return _plain(dict(vars(args) if isinstance(args, argparse.Namespace) else args))
    except Exception:  # noqa: BLE001 - any failure: leave the verdict to the full read
        return None


# --------------------------------------------------------------------------- motion template

def _numpy_allowed() -> dict[tuple[str, str], Any]:
    """The only globals a numpy-array pickle needs, for numpy 1.x and 2.x module paths."""
    core = getattr(np, "_core", None)
    if core is None:  # numpy 1.x
        import numpy.core as core  # type: ignore[no-redef]
    import codecs
    from collections import OrderedDict

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # bytes in protocol <= 2
        ("collections", "OrderedDict"): OrderedDict,
    }
    for prefix in ("numpy.core", "numpy._core"):
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        allowed[(f"{prefix}.multiarray", "scalar")] = core.multiarray.scalar
        allowed[(f"{prefix}.numeric", "_frombuffer")] = core.numeric._frombuffer
    return allowed


class _Refused(pickle.UnpicklingError):
    """The pickle asked for something outside the allow-list."""


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array/dtype/scalar reconstruction globals."""

    _allowed = _numpy_allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"global '{module}.{name}' is not allowed") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent ids are not allowed")


def _template_from_pickle(path: Path, fix: str | None) -> Any:
    slot = "motion_template"
    try:
        with open(path, "rb") as fh:
            return _NumpyUnpickler(fh).load()
    except _Refused as exc:
        raise _error(path, f"refused to load: the pickle holds something other than numpy "
                     f"arrays ({exc}). It may be malicious.", slot, fix) from exc
    except Exception as exc:
        raise _error(path, f"cannot be read, the pickle is corrupt or truncated ({exc!r}).",
                     slot, fix) from exc


def read_motion_template(path: str | Path, fix: str | None = None) -> dict[str, np.ndarray]:
    """Read the motion template (de-normalisation statistics) as ``name -> ndarray``.

    Accepts the official ``motion_template.pkl`` (a pickled dict of numpy arrays,
    read with a numpy-only unpickler) and converted ``.json`` (``name -> list``)
    or ``.safetensors`` files. The entries the decoder needs (``MOTION_TEMPLATE_REQUIRED``)
    are checked and returned flattened (``mean_exp``/``std_exp`` [63], ``min_t``/``max_t``
    [3], the rest [1]; angles in degrees); other entries are returned as stored.
    """
    slot = "motion_template"
    path = Path(path)
    kind = _check_readable(path, slot, fix)
    if kind == "safetensors":
        from safetensors.numpy import load_file

        try:
            obj: Any = load_file(str(path))
        except Exception as exc:
            raise _error(path, f"cannot be read, the safetensors file is corrupt or truncated "
                         f"({exc}).", slot, fix) from exc
    elif kind == "pickle":
        obj = _template_from_pickle(path, fix)
    else:
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(obj, dict):  # JSON has no dtype: the official arrays are float32
                obj = {k: np.asarray(v, dtype=np.float32) for k, v in obj.items()}
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError) as exc:
            raise _error(path, "is neither a pickle, a safetensors nor a JSON motion template "
                         f"({exc}).", slot, fix) from exc
    if not isinstance(obj, Mapping):
        raise _error(path, f"holds a {type(obj).__name__}, not a dict of arrays.", slot, fix)

    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        arr = np.asarray(value)
        if not isinstance(key, str) or arr.dtype.kind not in "fiub":
            raise _error(path, f"entry {key!r} is not a numeric array ({arr.dtype}).", slot, fix)
        out[key] = arr
    problems = []
    for key, size in MOTION_TEMPLATE_REQUIRED.items():
        if key not in out:
            problems.append(f"{key} missing")
        elif out[key].size != size:
            problems.append(f"{key} has {out[key].size} values, expected {size}")
        elif out[key].dtype.kind != "f" or not np.all(np.isfinite(out[key])):
            problems.append(f"{key} is not finite floating point")
        else:
            out[key] = out[key].reshape(size)
    if problems:
        raise _error(path, "is not a usable motion template: " + "; ".join(problems) + ".",
                     slot, fix)
    return out

