"""The pairs people compare: each task with the contestant's and the reference's answers, and
the judge's verdict on the very same two answers where one exists.

Where they come from, first match wins:
1. `--answers FILE --reference FILE`: two runs' answers (or any answers and a reference file);
2. an eval run's folder (`--eval_dir`, default output/eval) with eval_judgments.jsonl: the
   pairs the judge saw, with its verdicts;
3. that folder's eval_answers.jsonl (a run with `--judge_model none`) against `--reference`,
   else the run's reference (its eval_summary.json names the file, or the named set).

A task is known by a stable id, the hash of its instruction and input, so verdicts stay
attached to their task however the files are ordered.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assess.eval_set import (
    DEFAULT_SET_NAME,
    NAMED_SETS,
    EvalInputError,
    cached_download,
    default_cache_dir,
    generator_of,
    item_key,
    load_eval_set,
    load_reference,
    pair_reference,
    string_field,
)
from assess.human.config import HumanConfig
from assess.stats import SCORE
from core.records import read_json, read_jsonl_objects

logger = logging.getLogger(__name__)

JUDGMENTS_NAME = "eval_judgments.jsonl"
ANSWERS_NAME = "eval_answers.jsonl"
SUMMARY_NAME = "eval_summary.json"


@dataclass(frozen=True)
class Pair:
    """One task and its two answers; `index` is its place in the list people work through."""

    index: int
    task_id: str
    instruction: str
    input: str
    category: str
    contestant: str
    reference: str


@dataclass(frozen=True)
class Pairs:
    """The pairs, who wrote each side, and the judge's results on the same pairs."""

    pairs: list[Pair]
    contestant_name: str
    reference_name: str
    source: str
    unpaired: int = 0  # answers with no reference answer (not shown)
    judge_model: str | None = None
    judge: dict[str, float] = field(default_factory=dict)  # task id -> the judge's score for the contestant
    judge_other_answers: int = 0  # judged tasks whose answers are not the ones shown here

    @property
    def digest(self) -> str:
        """sha256 of every pair's text, in order: what the verdicts were given on."""
        hasher = hashlib.sha256()
        for pair in self.pairs:
            for text in (pair.instruction, pair.input, pair.contestant, pair.reference):
                hasher.update(text.encode("utf-8") + b"\x1f")
        return hasher.hexdigest()

    def by_id(self) -> dict[str, Pair]:
        return {pair.task_id: pair for pair in self.pairs}


def task_id(instruction: str, input: str) -> str:
    """The stable id of a task: its whitespace-normalised text, hashed."""
    instruction, input = item_key(instruction, input)
    return hashlib.sha256(f"{instruction}\x1f{input}".encode()).hexdigest()[:16]


def _deduplicated(rows: list[tuple[str, str, str, str, str]]) -> list[Pair]:
    """Pairs from (instruction, input, category, contestant, reference) rows; a task that comes
    twice is shown once (its first answers)."""
    pairs: list[Pair] = []
    seen: set[str] = set()
    for instruction, input, category, mine, theirs in rows:
        tid = task_id(instruction, input)
        if tid in seen:
            logger.warning("task %r comes twice; its first answers are shown", instruction[:60])
            continue
        seen.add(tid)
        pairs.append(Pair(len(pairs), tid, instruction, input, category, mine, theirs))
    return pairs


def _judge_score(record: dict[str, Any]) -> float | None:
    """The contestant's result in a judgment record: the weighted preference, else the outcome."""
    if record.get("preference") is not None:
        return float(record["preference"])
    return SCORE.get(record.get("outcome") or "")


def _read_judgments(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, record in read_jsonl_objects(path, hint="check --judgments or --eval_dir"):
        where = f"{path}:{number}"
        for key in ("instruction", "contestant_answer", "reference_answer"):
            if key not in record:
                raise EvalInputError(f"{where}: no {key!r}; is this a judge's eval_judgments.jsonl?")
        records.append({**record, "_where": where})
    return records


def _from_judgments(records: list[dict[str, Any]], path: Path) -> tuple[list[Pair], str, str]:
    rows = [(string_field(r, "instruction", r["_where"]).strip(), string_field(r, "input", r["_where"]).strip(),
             string_field(r, "category", r["_where"]), string_field(r, "contestant_answer", r["_where"]),
             string_field(r, "reference_answer", r["_where"])) for r in records]
    if not rows:
        raise EvalInputError(f"{path}: no judgments in it; run the eval again, or pass --answers and --reference")
    first = records[0]
    return _deduplicated(rows), str(first.get("contestant") or "contestant"), str(first.get("reference") or "reference")


def _from_answers(answers_path: Path, reference_path: Path, what: str, flag: str) -> tuple[list[Pair], int]:
    items = load_eval_set(answers_path, what=what, flag=flag)
    mine = load_reference(answers_path, what=what, flag=flag)
    theirs = pair_reference(items, load_reference(reference_path))
    if not theirs:
        raise EvalInputError(f"reference {reference_path}: covers none of the {len(items)} answered tasks of "
                             f"{answers_path} (matched by instruction and input); pass the reference for this set")
    rows = [(item.instruction, item.input, item.category, mine[item_key(item.instruction, item.input)],
             theirs[item.index]) for item in items if item.index in theirs]
    return _deduplicated(rows), len(items) - len(theirs)


def _run_reference(eval_dir: Path, summary: dict[str, Any]) -> tuple[Path, str]:
    """The reference an eval run used (or, run without a judge, its set's reference) and its name."""
    recorded = summary.get("reference_file")
    if recorded:
        return Path(recorded), str(summary.get("reference") or Path(recorded).stem)
    run_config = summary.get("config") or {}
    if run_config.get("reference"):
        path = Path(run_config["reference"]).expanduser()
        return path, run_config.get("reference_name") or path.stem
    named = NAMED_SETS.get(str(run_config.get("eval_set") or "").strip() or DEFAULT_SET_NAME)
    if named is None:
        raise EvalInputError(f"{eval_dir} was answered on {run_config.get('eval_set')}, which has no known "
                             f"reference answers: pass --reference FILE")
    cache = Path(run_config["cache_dir"]).expanduser() if run_config.get("cache_dir") else default_cache_dir()
    return cached_download(named.reference, cache), named.reference_name


def _attach_judge(pairs: list[Pair], records: list[dict[str, Any]]) -> tuple[dict[str, float], int]:
    """The judge's score per task where it judged exactly the answers shown here."""
    by_id = {pair.task_id: pair for pair in pairs}
    scores: dict[str, float] = {}
    other = 0
    for record in records:
        pair = by_id.get(task_id(str(record.get("instruction", "")), str(record.get("input") or "")))
        if pair is None:
            continue
        if (str(record["contestant_answer"]).strip(), str(record["reference_answer"]).strip()) != (
                pair.contestant.strip(), pair.reference.strip()):
            other += 1
            continue
        score = _judge_score(record)
        if score is not None:
            scores[pair.task_id] = score
    return scores, other


def load_pairs(config: HumanConfig) -> Pairs:
    """The pairs to show, their names and the judge's results on them; one-line errors."""
    eval_dir = Path(config.eval_dir).expanduser()
    reference_override = Path(config.reference).expanduser() if config.reference else None
    judgments_path = Path(config.judgments).expanduser() if config.judgments else (
        None if config.answers else eval_dir / JUDGMENTS_NAME)
    if config.judgments and not judgments_path.is_file():  # type: ignore[union-attr]
        raise EvalInputError(f"--judgments {judgments_path}: no such file")
    judgments = _read_judgments(judgments_path) if judgments_path and judgments_path.is_file() else []
    unpaired = 0
    summary: dict[str, Any] = {}
    if not config.answers and (eval_dir / SUMMARY_NAME).is_file():
        summary = read_json(eval_dir / SUMMARY_NAME, hint="check --eval_dir")
        summary = summary if isinstance(summary, dict) else {}
    if config.answers:
        answers_path = Path(config.answers).expanduser()
        pairs, unpaired = _from_answers(answers_path, reference_override, "answers", "--answers")  # type: ignore[arg-type]
        contestant = generator_of(answers_path, "answers", "--answers") or answers_path.stem
        reference = generator_of(reference_override) or reference_override.stem  # type: ignore[union-attr,arg-type]
        source = f"{answers_path} vs {reference_override}"
    elif judgments and reference_override is None:
        pairs, contestant, reference = _from_judgments(judgments, judgments_path)  # type: ignore[arg-type]
        source = str(judgments_path)
    else:
        answers_path = eval_dir / ANSWERS_NAME
        if not answers_path.is_file():
            raise EvalInputError(f"{eval_dir}: no eval run here (no {ANSWERS_NAME}); run `make eval` first, "
                                 f"or pass --answers FILE --reference FILE")
        if reference_override is not None:
            reference_path, reference = reference_override, generator_of(reference_override) or reference_override.stem
        else:
            reference_path, reference = _run_reference(eval_dir, summary)
        pairs, unpaired = _from_answers(answers_path, reference_path, "answers", "--eval_dir")
        contestant = str(summary.get("contestant") or generator_of(answers_path, "answers", "--eval_dir") or "contestant")
        source = f"{answers_path} vs {reference_path}"
    judge, other = _attach_judge(pairs, judgments) if judgments else ({}, 0)
    judge_model = None
    if judge:
        same_run = judgments_path is not None and judgments_path.parent.resolve() == eval_dir.resolve()
        judge_model = str(summary["judge_model"]) if same_run and summary.get("judge_model") else (
            f"the judge of {judgments_path}")
    return Pairs(pairs, config.name or contestant, config.reference_name or reference, source, unpaired,
                 judge_model, judge, other)
