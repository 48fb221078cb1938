"""``python -m joyvasa_core.parity FIXTURE_DIR [--json REPORT.json]``.

Runs every fixture in the folder through this project's code and exits 0 only
if every output of every fixture matched within tolerance.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from .fixture import list_fixtures
from .runner import format_table, run_directory, to_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m joyvasa_core.parity", description=__doc__)
    parser.add_argument("fixture_dir")
    parser.add_argument("--json", dest="json_path", help="write a JSON report here")
    parser.add_argument("--only", nargs="*", help="run only these fixture names")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not list_fixtures(args.fixture_dir):
        print(f"no fixtures (<name>.json + <name>.safetensors) in {args.fixture_dir}", file=sys.stderr)
        return 2
    results = run_directory(args.fixture_dir, torch.device(args.device), args.only)
    print(format_table(results))
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(to_report(results), fh, indent=1)
    return 0 if results and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
