"""A jobs file (CSV with a header row, or JSONL) -> checked rows, each a :class:`~joyvasa_core.job.Job`.

Every column is an option of the headless command under its option name
(``cfg_scale``, ``cfg-scale`` or ``--cfg-scale`` all mean ``--cfg-scale``);
a row becomes the argument list ``--cfg-scale 2 --seed 3 ...``, is parsed by
the headless command's parser (:func:`joyvasa_core.options.build_parser`)
and becomes a Job through :func:`joyvasa_core.options.job_from_args`, so every
option the command has, including ones added later, works in a jobs file
without a change here.
Boolean flags take true/false (1/0, yes/no); an empty cell or JSON null
keeps the option's default.

Paths: ``output`` and ``save_motion`` are relative to the output folder;
every other path option (``image``, ``audio``, ``video``, ...) is relative to
the jobs file's folder. The model options (``--models-dir``, ``--device``,
``--precision``, ``--animal``: the parser's "models" group) belong to the
batch command, because the models load once for all jobs; a row that sets
one fails with a message saying so.
"""
from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import options
from ..errors import UsageError, one_line
from ..job import Job, ModelOptions, read_inputs
from ..scene import speaker_under

OUTPUT_OPTIONS = ("output", "save_motion")   # relative to --out-dir; the rest to the jobs file
TRUE = frozenset({"true", "1", "yes", "y", "on"})
FALSE = frozenset({"false", "0", "no", "n", "off"})


class JobsFileError(ValueError):
    """The jobs file as a whole cannot be read (missing, empty, not CSV/JSONL)."""


@dataclass
class JobRow:
    """One row of the jobs file.

    row: 1-based number of the job (data rows, the CSV header not counted);
    line: its line in the jobs file; job: the checked job (absolute paths) or
    None when the row could not be parsed; output: the MP4 it writes (None if
    unknown); status: "" = to render, "skipped" = output exists, "failed" =
    refused by the checks, with ``error`` the one-line reason.
    """

    row: int
    line: int
    job: Job | None = None
    output: Path | None = None
    status: str = ""
    error: str | None = None


def _raise_usage(message: str):
    raise UsageError(message)


def job_parser(*, inputs_required: bool = True) -> argparse.ArgumentParser:
    """:func:`options.build_parser` raising :class:`~joyvasa_core.errors.UsageError` instead of exiting.

    ``inputs_required=False`` drops the required flags (for batch-wide defaults).
    """
    parser = options.build_parser()
    parser.error = _raise_usage          # one line per bad row, not SystemExit
    if not inputs_required:
        for action in parser._actions:  # noqa: SLF001 - argparse has no public accessor
            action.required = False
        for group in parser._mutually_exclusive_groups:  # noqa: SLF001 - --image | --video
            group.required = False
    return parser


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """dest -> action for every ``--long`` option of the parser."""
    return {a.dest: a for a in parser._actions  # noqa: SLF001
            if any(s.startswith("--") for s in a.option_strings) and a.dest != "help"}


def model_dests(parser: argparse.ArgumentParser) -> frozenset[str]:
    """dests of the options that decide which models load (the parser's "models" group)."""
    for group in parser._action_groups:  # noqa: SLF001
        if group.title == options.MODELS_GROUP:
            return frozenset(a.dest for a in group._group_actions)  # noqa: SLF001
    return frozenset()


def _long_name(action: argparse.Action) -> str:
    return next(s for s in action.option_strings if s.startswith("--"))


def _read_rows(path: Path) -> Iterator[tuple[int, dict, str | None]]:
    """(line number, {column: value}, None) per data row of a CSV or JSONL file;
    (line number, {}, why) for a row that cannot be read."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise JobsFileError(f"jobs file {path} not found. Check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobsFileError(f"cannot read jobs file {path}: {exc}. "
                            "Give a UTF-8 CSV (with a header row) or JSONL file.") from None
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first:
        raise JobsFileError(f"jobs file {path} is empty. Write a header row and one row per job.")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json") or first.startswith("{"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, {}, (f"not valid JSON ({exc.msg} at column {exc.colno}). "
                                   "Write one JSON object per line.")
                continue
            if isinstance(row, dict):
                yield number, row, None
            else:
                yield number, {}, ("not a JSON object. Write one {\"option\": value, ...} "
                                   "object per line.")
        return
    reader = csv.DictReader(text.splitlines(), skipinitialspace=True)
    for row in reader:
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        if None in row:
            yield reader.line_num, {}, (f"{len(reader.fieldnames) + len(row[None])} cells but "
                                        f"the header has {len(reader.fieldnames)} columns. "
                                        "Quote cells with commas.")
            continue
        yield reader.line_num, row, None


def _argv(row: dict, actions: dict[str, argparse.Action], refused: frozenset[str]) -> list[str]:
    """A row's {column: value} -> the argument list of the headless command."""
    argv: list[str] = []
    for column, value in row.items():
        dest = str(column).strip().lstrip("-").replace("-", "_")
        if dest not in actions:
            raise UsageError(f"unknown column {column!r}: not an option of the headless "
                                 "command (see python -m joyvasa_core --help)")
        action = actions[dest]
        name = _long_name(action)
        if dest in refused:
            raise UsageError(f"column {column!r} sets {name}, which applies to all jobs "
                                 "(the models load once): give it to the batch command instead")
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if action.nargs == 0:   # store_true / store_false flag
            text = str(value).strip().lower()
            if text not in TRUE | FALSE:
                raise UsageError(f"column {column!r} is a flag: write true or false, "
                                     f"got {value!r}")
            if text in TRUE:
                argv.append(name)
            continue
        texts = [v.strip() if isinstance(v, str) else json.dumps(v)
                 for v in (value if isinstance(value, list) else [value])]
        # --name=value: a value that starts with '-' is not taken for an option
        if action.nargs is None and isinstance(action, argparse._AppendAction):  # noqa: SLF001
            argv += [f"{name}={text}" for text in texts]     # --speaker: one flag per value
        else:
            argv += [f"{name}={texts[0]}"] if len(texts) == 1 else [name, *texts]
    return argv


def _resolve_paths(args: argparse.Namespace, actions: dict[str, argparse.Action],
                   jobs_dir: Path, out_dir: Path, refused: frozenset[str]) -> None:
    """Make every path option absolute: outputs under ``out_dir``, inputs under ``jobs_dir``,
    the batch-wide model options under the current folder (workers may run elsewhere)."""
    for dest in actions:
        value = getattr(args, dest, None)
        if not isinstance(value, Path):
            continue
        base = out_dir if dest in OUTPUT_OPTIONS else Path.cwd() if dest in refused else jobs_dir
        setattr(args, dest, base / value.expanduser())
    if getattr(args, "speaker", None) and getattr(args, "turns", None) is None:
        args.speaker = [speaker_under(text, jobs_dir) for text in args.speaker]


def parse_defaults(argv: Sequence[str]) -> argparse.Namespace:
    """Options given to the batch command for every job (no inputs needed).

    Raises :class:`UsageError` for an unknown option or a per-job option
    (``--image``, ``--output``, ...) given batch-wide.
    """
    parser = job_parser(inputs_required=False)
    args = parser.parse_args(list(argv))
    actions = _options(parser)
    per_job = [d for d, a in actions.items() if a.type is Path and d not in model_dests(parser)]
    for dest in per_job:
        if getattr(args, dest, None) is not None:
            raise UsageError(f"{_long_name(actions[dest])} differs for each job: put it in a "
                             "column of the jobs file")
    return args


def batch_models(argv: Sequence[str]) -> ModelOptions:
    """The models of the whole batch: the model options among the batch command's options."""
    return options.model_options(parse_defaults(argv))


def read_jobs(jobs_file: Path, out_dir: Path, defaults: Sequence[str] = (), *,
              overwrite: bool = False, decode: bool = True) -> list[JobRow]:
    """Parse and check every row of ``jobs_file`` before anything renders.

    defaults: headless options applied to every job before its own columns
    (the batch command's ``--models-dir``, ``--device``, ``--sampler``, ...).
    Each row is parsed, its paths resolved, then made a
    :class:`~joyvasa_core.job.Job` (:func:`options.job_from_args` judges it);
    an output already on disk is ``skipped`` unless ``overwrite``; otherwise
    (``decode``) its photo and speech are decoded once by
    :func:`~joyvasa_core.job.read_inputs` and dropped (a fraction of a second
    per job; nothing is kept in memory). A bad row gets status ``failed`` and
    its one-line error; the other rows are unaffected.

    Raises :class:`JobsFileError` when the file itself cannot be read.
    """
    parser = job_parser()
    actions = _options(parser)
    refused = model_dests(parser)
    jobs_dir = jobs_file.resolve().parent
    out_dir = out_dir.resolve()
    rows: list[JobRow] = []
    writers: dict[Path, int] = {}
    for row_number, (line, row, problem) in enumerate(_read_rows(jobs_file), start=1):
        entry = JobRow(row_number, line)
        rows.append(entry)
        try:
            if problem is not None:
                raise UsageError(problem)
            args = parser.parse_args([*defaults, *_argv(row, actions, refused)])
            _resolve_paths(args, actions, jobs_dir, out_dir, refused)
            entry.output = args.output
            job = options.job_from_args(args)
            entry.job = job
            if args.output in writers:
                raise UsageError(f"output {args.output} is also written by row "
                                 f"{writers[args.output]}: give each job its own output")
            writers[args.output] = row_number
            if args.output.exists() and not overwrite:
                entry.status = "skipped"
                continue
            if decode:
                read_inputs(job, options.model_options(args).folder())
        except Exception as exc:  # noqa: BLE001 - a bad row fails alone, with its reason
            entry.status, entry.error = "failed", one_line(exc)
    if not rows:
        raise JobsFileError(f"jobs file {jobs_file} has no jobs. Write one row per job "
                            "(CSV under a header row, or one JSON object per line).")
    return rows
