"""Math problems for the real environment: hub datasets through ``datasets``, local JSONL /
JSON / parquet files, the CHAMP set shipped in ``champ-dataset``, reasoning-gym's procedural
tasks and a synthetic arithmetic task with graded difficulty.

Every loader returns a list of ``Problem``. A row without a usable question or answer is
malformed: by default loading stops with a ``ConfigError`` naming the file and line (row for
parquet and hub datasets) of each; with ``skip_malformed=True`` such rows are skipped and
listed in the returned ``LoadReport`` (and printed once as a warning), never silently.

Sources (``load_problems(source, ...)``):

- a name in ``HUB_DATASETS`` (gsm8k, math500, aime24, amc23, minerva, olympiadbench,
  deepmath-103k, polaris-53k, dapo-math-17k, deepscaler): ``datasets.load_dataset`` at run time
  with the listed hub id, config, split and field mapping; ``hub:OWNER/NAME`` for any other hub
  dataset with explicit ``question_field`` / ``answer_field``;
- a path ending in ``.jsonl``, ``.json`` or ``.parquet`` (``question`` / ``answer`` fields by
  default; dotted paths such as ``reward_model.ground_truth`` or ``prompt.0.content`` reach
  nested fields);
- ``champ``: the 270 CHAMP competition problems with their final answers;
- ``reasoning_gym:TASK``: ``reasoning_gym.create_dataset(TASK, size=..., seed=..., **options)``;
- ``arith``: synthetic addition / multiplication with graded difficulty (``arith_problems``).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from allocbench.errors import ConfigError


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str
    source: str = ""
    difficulty: float | None = None  # the dataset's own difficulty, if it has one


@dataclass(frozen=True)
class HubSpec:
    hub_id: str
    split: str
    question: str  # field (dotted path) holding the question
    answer: str  # field (dotted path) holding the final answer
    config: str | None = None
    difficulty: str | None = None
    answer_after: str | None = None  # keep only what follows this marker (GSM8K's "####")


HUB_DATASETS: dict[str, HubSpec] = {
    "gsm8k": HubSpec("openai/gsm8k", "test", "question", "answer", config="main", answer_after="####"),
    "math500": HubSpec("HuggingFaceH4/MATH-500", "test", "problem", "answer", difficulty="level"),
    "aime24": HubSpec("HuggingFaceH4/aime_2024", "train", "problem", "answer"),
    "amc23": HubSpec("math-ai/amc23", "test", "question", "answer"),
    "minerva": HubSpec("math-ai/minervamath", "test", "question", "answer"),
    "olympiadbench": HubSpec("Hothan/OlympiadBench", "train", "question", "final_answer",
                             config="OE_TO_maths_en_COMP"),
    "deepmath-103k": HubSpec("zwhe99/DeepMath-103K", "train", "question", "final_answer",
                             difficulty="difficulty"),
    "polaris-53k": HubSpec("POLARIS-Project/Polaris-Dataset-53K", "train", "problem", "answer",
                           difficulty="difficulty"),
    "dapo-math-17k": HubSpec("BytedTsinghua-SIA/DAPO-Math-17k", "train", "prompt.0.content",
                             "reward_model.ground_truth"),
    "deepscaler": HubSpec("agentica-org/DeepScaleR-Preview-Dataset", "train", "problem", "answer"),
}
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass
class LoadReport:
    """What a load kept and what it skipped (``where: reason`` per malformed row)."""

    source: str
    kept: int = 0
    skipped: list[str] = field(default_factory=list)


def source_names() -> list[str]:
    return [*HUB_DATASETS, "champ", "arith", "reasoning_gym:TASK", "hub:OWNER/NAME", "FILE.jsonl|.json|.parquet"]


def load_problems(source: str, *, split: str | None = None, question_field: str | None = None,
                  answer_field: str | None = None, skip_malformed: bool = False, size: int | None = None,
                  seed: int = 0, options: dict | None = None) -> tuple[list[Problem], LoadReport]:
    """Problems from ``source`` (see the module docstring) and the report of the load."""
    options = dict(options or {})
    if source == "arith":
        problems = arith_problems(size or 1000, seed=seed, **options)
        return problems, LoadReport(source, kept=len(problems))
    if source.startswith("reasoning_gym:"):
        return _reasoning_gym(source.partition(":")[2], size or 500, seed, options)
    if source == "champ":
        rows = _champ_rows()
        return _collect(source, rows, question_field or "_text", answer_field or "_answer", None, None,
                        skip_malformed, size)
    if source.lower().endswith(FILE_SUFFIXES) or Path(source).is_file():
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"data file not found: {path}")
        rows = _file_rows(path)
        return _collect(str(path), rows, question_field or "question", answer_field or "answer", None, None,
                        skip_malformed, size)
    if source in HUB_DATASETS or source.startswith("hub:"):
        spec = HUB_DATASETS.get(source) or HubSpec(source[4:], split or "train", question_field or "question",
                                                   answer_field or "answer")
        rows = _hub_rows(spec, split or spec.split)
        return _collect(f"{spec.hub_id}[{split or spec.split}]", rows, question_field or spec.question,
                        answer_field or spec.answer, spec.difficulty, spec.answer_after, skip_malformed, size)
    raise ConfigError(f"unknown data source {source!r}; known: {', '.join(source_names())}")


# ---------------------------------------------------------------- rows from each kind of source

def _file_rows(path: Path) -> Iterable[tuple[str, Any]]:
    """(where, row) pairs; a row that cannot be decoded is yielded as an exception."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"{path}: not a readable parquet file ({e})") from None
        for i, row in enumerate(table.to_pylist(), start=1):
            yield f"{path}: row {i}", row
        return
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        for i, row in enumerate(rows, start=1):
            yield f"{path}: item {i}", row
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{lineno}", json.loads(line)
        except json.JSONDecodeError as e:
            yield f"{path}:{lineno}", ValueError(f"invalid JSON ({e.msg})")


def _hub_rows(spec: HubSpec, split: str) -> Iterable[tuple[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise ConfigError("loading a hub dataset needs the `datasets` package (pip install datasets)") from None
    try:
        ds = datasets.load_dataset(spec.hub_id, spec.config, split=split)
    except Exception as e:  # noqa: BLE001 - offline, gated, renamed: one clear message
        raise ConfigError(
            f"could not load {spec.hub_id} (config {spec.config}, split {split}) through datasets: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. Without hub access, save it as "
            f"JSONL or parquet and pass the file path as the data source") from None
    for i, row in enumerate(ds, start=1):
        yield f"{spec.hub_id}[{split}]: row {i}", row


def _champ_rows() -> Iterable[tuple[str, Any]]:
    import importlib.util

    spec = importlib.util.find_spec("champ_dataset")
    if spec is None or spec.origin is None:
        raise ConfigError("the champ source needs the champ-dataset package (pip install --no-deps champ-dataset)")
    path = Path(spec.origin).parent / "dataset_files" / "v0.json"
    problems = json.loads(path.read_text(encoding="utf-8"))["problems"]
    for key, row in problems.items():
        yield f"{path}: problem {key}", row


def _reasoning_gym(task: str, size: int, seed: int, options: dict) -> tuple[list[Problem], LoadReport]:
    try:
        import reasoning_gym
    except ImportError:
        raise ConfigError("the reasoning_gym source needs the reasoning-gym package") from None
    try:
        ds = reasoning_gym.create_dataset(task, size=size, seed=seed, **options)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"reasoning_gym: cannot create {task!r} with {options}: {e}") from None
    rows = ((f"reasoning_gym:{task}: item {i}", row) for i, row in enumerate(ds, start=1))
    return _collect(f"reasoning_gym:{task}", rows, "question", "answer", None, None, False, None)


# ---------------------------------------------------------------- validation

def get_field(row: Any, path: str) -> Any:
    """``row[a][b][0]...`` for the dotted path ``a.b.0``; KeyError when absent."""
    value = row
    for part in path.split("."):
        if isinstance(value, dict):
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.lstrip("-").isdigit():
            value = value[int(part)]
        else:
            raise KeyError(part)
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if np.isfinite(value) else None
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return ", ".join(v.strip() for v in value)  # OlympiadBench's final_answer is a list
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _collect(source: str, rows: Iterable[tuple[str, Any]], qf: str, af: str, df: str | None,
             answer_after: str | None, skip_malformed: bool, size: int | None) -> tuple[list[Problem], LoadReport]:
    report = LoadReport(source)
    problems: list[Problem] = []
    for where, row in rows:
        problem, reason = _to_problem(row, qf, af, df, answer_after, source)
        if problem is None:
            report.skipped.append(f"{where}: {reason}")
            continue
        problems.append(problem)
        if size is not None and len(problems) >= size:
            break
    report.kept = len(problems)
    if report.skipped:
        listing = "\n  ".join(report.skipped[:20]) + (
            f"\n  ... and {len(report.skipped) - 20} more" if len(report.skipped) > 20 else "")
        if not skip_malformed:
            raise ConfigError(f"{len(report.skipped)} malformed row(s) in {source} (pass skip_malformed=True, "
                              f"--env-set data.skip_malformed=true, to skip them):\n  {listing}")
        print(f"allocbench: warning: skipped {len(report.skipped)} malformed row(s) in {source}:\n  {listing}",
              file=sys.stderr)
    if not problems:
        raise ConfigError(f"{source}: no usable problems")
    return problems, report


def _to_problem(row: Any, qf: str, af: str, df: str | None, answer_after: str | None,
                source: str) -> tuple[Problem | None, str]:
    if isinstance(row, Exception):
        return None, str(row)
    if not isinstance(row, dict):
        return None, f"expected an object, got {type(row).__name__}"
    values = {}
    for name, path in (("question", qf), ("answer", af)):
        try:
            raw = get_field(row, path)
        except (KeyError, IndexError, TypeError):
            return None, f"no field {path!r}"
        text = _text(raw)
        if text is None:
            return None, f"field {path!r} is empty or not text ({type(raw).__name__})"
        values[name] = text
    if answer_after:
        _, sep, tail = values["answer"].rpartition(answer_after)
        if not sep:
            return None, f"answer has no {answer_after!r} marker"
        values["answer"] = tail.strip().replace(",", "")
    difficulty = None
    if df:
        try:
            difficulty = _difficulty(get_field(row, df))
        except (KeyError, IndexError, TypeError):
            pass
    return Problem(values["question"], values["answer"], source, difficulty), ""


def _difficulty(value: Any) -> float | None:
    """A float from 7, 7.5, "Level 3" or "3/8"; None when it is none of these."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
        if m and int(m.group(2)):
            return int(m.group(1)) / int(m.group(2))
        m = re.search(r"-?\d+(\.\d+)?", value)
        if m:
            return float(m.group(0))
    return None


# ---------------------------------------------------------------- synthetic arithmetic

# level -> (operator, digits of a, digits of b); ordered from easy to hard
ARITH_LEVELS: dict[int, tuple[str, int, int]] = {
    1: ("+", 1, 1), 2: ("+", 2, 1), 3: ("+", 2, 2), 4: ("*", 1, 1),
    5: ("+", 3, 2), 6: ("+", 3, 3), 7: ("*", 2, 1), 8: ("*", 2, 2),
}


def arith_problems(size: int, seed: int = 0, levels: Iterable[int] = tuple(ARITH_LEVELS),
                   template: str = "{a}{op}{b}=") -> list[Problem]:
    """``size`` distinct problems, levels drawn uniformly; ``difficulty`` is the level. The
    question is ``template`` filled in (``{a}{op}{b}=`` for the tiny model, a sentence for an
    instruction-tuned one); the answer is the exact result."""
    levels = [int(lv) for lv in levels]
    unknown = [lv for lv in levels if lv not in ARITH_LEVELS]
    if unknown or not levels:
        raise ConfigError(f"arith levels must be among {list(ARITH_LEVELS)}, got {levels}")
    capacity = sum(_level_capacity(lv) for lv in levels)
    if size > capacity // 2:
        raise ConfigError(f"arith: {size} distinct problems asked from levels {levels}, which hold {capacity}")
    rng = np.random.default_rng([seed, 42])
    seen: set[tuple[int, str, int]] = set()
    out: list[Problem] = []
    while len(out) < size:
        lv = levels[int(rng.integers(len(levels)))]
        op, da, db = ARITH_LEVELS[lv]
        a, b = (int(rng.integers(10 ** (d - 1) if d > 1 else 0, 10**d)) for d in (da, db))
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        result = a + b if op == "+" else a * b
        out.append(Problem(template.format(a=a, op=op, b=b), str(result), "arith", float(lv)))
    # levels with few distinct problems fill up first: shuffle so any slice mixes all levels
    return [out[i] for i in rng.permutation(len(out))]


def _level_capacity(level: int) -> int:
    _, da, db = ARITH_LEVELS[level]
    count = lambda d: 10 if d == 1 else 9 * 10 ** (d - 1)  # noqa: E731
    return count(da) * count(db)
