"""human_summary.json: the people's verdicts through the same statistics as the judge's.

A task's result is the mean of its verdicts' scores (the contestant's win 1, loss 0, tie and
"both bad" 0.5), so a task two people split on counts as a tie; then win rate, standard
error, bootstrap interval, per category and the length-controlled rate are computed exactly
as for the judge (`assess.stats`, `assess.length_control`). Beside them: each annotator's own
numbers, agreement between annotators, and the judge's agreement with the people when it
judged the same pairs.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from assess.human.agreement import annotator_agreement, judge_agreement, label
from assess.human.pairs import Pairs
from assess.human.verdicts import VERDICTS_NAME, VerdictLog, outcomes_of
from assess.length_control import length_controlled
from assess.stats import SCORE, describe, tally
from core.files import atomic_write_json

logger = logging.getLogger(__name__)

SUMMARY_NAME = "human_summary.json"


def task_scores(outcomes: dict[str, dict[str, str]]) -> dict[str, float]:
    """task id -> the mean score of its verdicts (both_bad counts as a tie)."""
    per_task: dict[str, list[float]] = {}
    for verdicts in outcomes.values():
        for task, outcome in verdicts.items():
            per_task.setdefault(task, []).append(SCORE[label(outcome)])
    return {task: sum(s) / len(s) for task, s in per_task.items()}


def _annotator(verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    decisive = [v for v in verdicts if v["choice"] in ("A", "B")]
    return {
        **tally([label(v["outcome"]) for v in verdicts]),
        "both_bad": sum(v["choice"] == "both_bad" for v in verdicts),
        # Far from 0.5: this person leans on the position (the sides are random, so the
        # contestant's rate is not affected on average, only made noisier).
        "picked_left": sum(v["choice"] == "A" for v in decisive) / len(decisive) if decisive else None,
    }


def build_summary(pairs: Pairs, log: VerdictLog, samples: int, seed: int) -> dict[str, Any]:
    """The summary of every verdict in force."""
    in_force = log.in_force()
    outcomes = outcomes_of(in_force)
    scores = task_scores(outcomes)
    judged = [p for p in pairs.pairs if p.task_id in scores]
    task_results = [scores[p.task_id] for p in judged]
    categories: dict[str, list[float]] = {}
    for pair in judged:
        categories.setdefault(pair.category or "(none)", []).append(scores[pair.task_id])
    verdicts = [v for tasks in in_force.values() for v in tasks.values()]
    results = {
        **describe(task_results, samples, seed),
        "verdicts": len(verdicts),
        "both_bad": sum(v["choice"] == "both_bad" for v in verdicts),
        "per_category": {name: tally(c) for name, c in sorted(categories.items())},
    }
    on_judged_tasks = [pairs.judge[p.task_id] for p in judged if p.task_id in pairs.judge]
    return {
        "contestant": pairs.contestant_name,
        "reference": pairs.reference_name,
        "pairs_from": pairs.source,
        "tasks": len(pairs.pairs),
        "tasks_with_verdicts": len(judged),
        "tasks_without_reference": pairs.unpaired,
        "results": results,
        "length_controlled": length_controlled([len(p.contestant) for p in judged],
                                               [len(p.reference) for p in judged], task_results),
        "annotators": {name: _annotator(list(in_force[name].values())) for name in sorted(in_force)},
        "agreement": annotator_agreement(outcomes),
        "judge": pairs.judge_model,
        "judge_agreement": judge_agreement(outcomes, pairs.judge) if pairs.judge else None,
        # The judge's own numbers on the tasks people judged, for a like-for-like comparison.
        "judge_on_the_same_tasks": tally(on_judged_tasks) if pairs.judge else None,
        "judge_other_answers": pairs.judge_other_answers,
        "seed": seed,
        "bootstrap_samples": samples,
        "verdicts_file": VERDICTS_NAME,
    }


def write_summary(path: Path, pairs: Pairs, log: VerdictLog, samples: int, seed: int) -> dict[str, Any]:
    summary = build_summary(pairs, log, samples, seed)
    atomic_write_json(path, summary, ensure_ascii=False)
    return summary


class SummaryWriter:
    """Rewrites the summary in a background thread after verdicts arrive, coalescing bursts:
    the bootstrap takes a moment on a large set, and a click should not wait for it."""

    def __init__(self, path: Path, pairs: Pairs, log: VerdictLog, samples: int, seed: int) -> None:
        self._args = (path, pairs, log, samples, seed)
        self._wanted = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="human-summary", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stop:
                return
            try:
                write_summary(*self._args)
            except Exception as err:  # noqa: BLE001 - the verdicts are safe; the summary is rewritten at exit
                logger.warning("could not write the summary (%s); the verdicts are saved", err)

    def close(self) -> dict[str, Any]:
        """Stop the thread and write the final summary (in the caller's thread)."""
        self._stop = True
        self._wanted.set()
        self._thread.join()
        return write_summary(*self._args)
