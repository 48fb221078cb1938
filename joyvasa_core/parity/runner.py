"""Run fixtures through this project's code and compare with the official outputs."""
from __future__ import annotations

import math
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from .fixture import Fixture, list_fixtures
from .registry import find_handler, tolerance


@dataclass
class OutputResult:
    fixture: str
    output: str
    max_abs_err: float
    atol: float
    rtol: float
    ok: bool
    note: str = ""


def compare(ours: torch.Tensor, ref: torch.Tensor, atol: float, rtol: float) -> tuple[float, bool]:
    """(max |ours - ref|, every element within ``atol + rtol * |ref|``), in float64."""
    a = ours.detach().to("cpu", torch.float64)
    b = ref.detach().to("cpu", torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape {tuple(a.shape)} != reference {tuple(b.shape)}")
    if a.numel() == 0:
        return 0.0, True
    diff = (a - b).abs()
    if not torch.isfinite(diff).all():
        return math.inf, False
    return float(diff.max()), bool((diff <= atol + rtol * b.abs()).all())


def run_fixture(fx: Fixture, device: torch.device) -> list[OutputResult]:
    """Run one fixture; every output it names gets a result (errors are failures)."""
    outputs = fx.names("output")
    fn = find_handler(fx.name)
    if fn is None:
        return [OutputResult(fx.name, o, math.inf, 0, 0, False, "no handler for this fixture")
                for o in outputs]
    try:
        with torch.inference_mode():
            produced = fn(fx, device)
    except Exception as exc:  # a failing fixture must not stop the others
        note = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        return [OutputResult(fx.name, o, math.inf, 0, 0, False, note) for o in outputs]
    results = []
    for name in outputs:
        atol, rtol = tolerance(fx.name, name)
        if name not in produced:
            results.append(OutputResult(fx.name, name, math.inf, atol, rtol, False, "not computed"))
            continue
        try:
            ref, subset = fx.reference(name)
            ours = produced[name]
            expected_shape = tuple(fx.specs[name]["shape"])
            if tuple(ours.shape) != expected_shape:
                raise ValueError(f"shape {tuple(ours.shape)} != {expected_shape}")
            if subset is not None:
                ours = ours[subset]
            err, ok = compare(ours, ref, atol, rtol)
            results.append(OutputResult(fx.name, name, err, atol, rtol, ok,
                                        "subset" if subset is not None else ""))
        except Exception as exc:
            results.append(OutputResult(fx.name, name, math.inf, atol, rtol, False,
                                        f"{type(exc).__name__}: {exc}"))
    return results


def run_directory(directory: str | Path, device: torch.device,
                  only: list[str] | None = None) -> list[OutputResult]:
    names = list_fixtures(directory)
    if only:
        names = [n for n in names if n in only]
    results: list[OutputResult] = []
    for name in names:
        results.extend(run_fixture(Fixture.open(directory, name), device))
    return results


def format_table(results: list[OutputResult]) -> str:
    rows = [("fixture", "output", "max_abs_err", "atol", "ok", "note")]
    rows += [(r.fixture, r.output, f"{r.max_abs_err:.3g}", f"{r.atol:g}",
              "ok" if r.ok else "FAIL", r.note) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:5], widths)) + "  " + row[5]
                     for row in rows)


def to_report(results: list[OutputResult]) -> dict:
    report: dict = {"fixtures": {}}
    for r in results:
        err = r.max_abs_err if math.isfinite(r.max_abs_err) else None
        report["fixtures"].setdefault(r.fixture, {})[r.output] = {
            "max_abs_err": err if err is not None else float("inf"), "ok": r.ok}
    return report
