"""Reading a parity fixture: ``<name>.safetensors`` plus its ``<name>.json`` sidecar.

Storage convention (see ``tests/data/REFERENCE.md`` section 4): small tensors
are stored exactly under their own name; large float tensors as ``X__f16``
(whole tensor rounded to float16) plus ``X__sub`` (an exact float32 strided
subset, its slice in the sidecar ``subset``). A tensor may also live in another
fixture's file (``stored_in: "other.safetensors:key"``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file


def parse_subset(text: str) -> tuple[slice | int, ...]:
    """``"[:, ::3, 2]"`` -> ``(slice(None), slice(None, None, 3), 2)``."""
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise ValueError(f"not a subset expression: {text!r}")
    items: list[slice | int] = []
    for part in body[1:-1].split(","):
        part = part.strip()
        if not re.fullmatch(r"-?\d*(:-?\d*){0,2}", part):
            raise ValueError(f"bad subset element {part!r} in {text!r}")
        if ":" in part:
            items.append(slice(*[int(p) if p else None for p in part.split(":")]))
        else:
            items.append(int(part))
    return tuple(items)


@dataclass
class Fixture:
    """One fixture: its name, sidecar metadata and lazily loaded tensors."""

    directory: Path
    name: str
    meta: dict[str, Any]
    _files: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, directory: str | Path, name: str) -> "Fixture":
        directory = Path(directory)
        meta = json.loads((directory / f"{name}.json").read_text())
        return cls(directory=directory, name=name, meta=meta)

    @property
    def config(self) -> dict[str, Any]:
        return self.meta.get("config", {})

    @property
    def specs(self) -> dict[str, dict[str, Any]]:
        return self.meta["tensors"]

    def names(self, role: str) -> list[str]:
        """Tensor names with the given role (``input``, ``output``, ``intermediate``)."""
        return [k for k, v in self.specs.items() if v.get("role") == role]

    def _file(self, stem: str) -> dict[str, torch.Tensor]:
        if stem not in self._files:
            self._files[stem] = load_file(str(self.directory / f"{stem}.safetensors"))
        return self._files[stem]

    def stored(self, key: str, stem: str | None = None) -> torch.Tensor:
        """A raw stored tensor by its storage key (e.g. ``out__sub``)."""
        return self._file(stem or self.name)[key]

    def has_stored(self, key: str) -> bool:
        return key in self._file(self.name)

    def tensor(self, name: str) -> torch.Tensor:
        """The full tensor ``name`` as the official code saw it.

        Exact tensors come back as stored; f16-stored ones are cast to float32
        (the reference fed exactly those values to the next module).
        """
        spec = self.specs.get(name, {})
        ref = spec.get("stored_in")
        if ref:
            stem, key = ref.split(":", 1)
            stem = stem.removesuffix(".safetensors")
            value = self.stored(key, stem)
        elif self.has_stored(name):
            value = self.stored(name)
        elif self.has_stored(name + "__f16"):
            value = self.stored(name + "__f16")
        else:
            raise KeyError(f"fixture {self.name}: no stored tensor for {name!r}")
        return value.float() if value.dtype == torch.float16 else value

    def reference(self, name: str) -> tuple[torch.Tensor, tuple | None]:
        """The exact reference for output ``name`` and the subset it covers (None: full)."""
        spec = self.specs[name]
        if self.has_stored(name):
            return self.stored(name), None
        if self.has_stored(name + "__sub"):
            return self.stored(name + "__sub"), parse_subset(spec["subset"])
        raise KeyError(f"fixture {self.name}: output {name!r} has no exact reference")


def list_fixtures(directory: str | Path) -> list[str]:
    """Fixture names in a folder: every ``<name>.json`` with a ``tensors`` table."""
    names = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and "tensors" in meta and \
                (path.with_suffix(".safetensors")).exists():
            names.append(path.stem)
    return names
