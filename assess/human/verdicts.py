"""Every verdict people give, saved as it is given, and which answer each of them sees on which side.

The page shows two answers, A on the left and B on the right, and never learns which one is
the contestant's: that is decided here, per annotator and task, by a seeded hash, and each
verdict is stored with the side the contestant was on. An annotator works through the tasks
in order; a skipped task comes back after the others, an undone verdict's task is shown again.

human_verdicts.jsonl holds a header (what the verdicts were given on: the pairs' sha256 and
the seed) and one event per line: `verdict`, `skip` or `undo`. The whole file is rewritten
through a temporary file and a rename on every event, so it is complete at every moment: a
closed browser or a killed server loses nothing, and restarting the page continues.
"""

from __future__ import annotations

import hashlib
import json
import threading
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from assess.human.pairs import Pair, Pairs
from core.exit_codes import InputError, UserError
from core.files import atomic_write_text
from core.records import read_jsonl

Choice = Literal["A", "B", "tie", "both_bad"]
CHOICES: tuple[str, ...] = ("A", "B", "tie", "both_bad")
VERDICTS_NAME = "human_verdicts.jsonl"
LOG_VERSION = 1
MAX_NAME_CHARS = 40


class VerdictLogError(InputError):
    """A verdicts file that cannot be continued; the message names the file, line and the fix."""


class RequestError(UserError):
    """A request the page should not have sent (an unknown task, an empty name): said in one line."""


class NameRefused(RequestError):
    """An annotator's name that cannot be used (empty, too long, control characters)."""


def contestant_on_a(seed: int, annotator: str, pair: Pair) -> bool:
    """True when `annotator` sees the contestant's answer as A (left) on this task: the first 32
    bits of sha256("<seed>\\x1fhuman\\x1f<annotator>\\x1f<task id>") are even. Per annotator, so
    two people comparing notes cannot infer the sides either."""
    text = f"{seed}\x1fhuman\x1f{annotator}\x1f{pair.task_id}"
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 2 == 0


def outcome_for_choice(choice: str, contestant_is_a: bool) -> str:
    """The contestant's result from a person's choice: win, loss, tie or both_bad."""
    if choice in ("tie", "both_bad"):
        return choice
    return "win" if (choice == "A") == contestant_is_a else "loss"


def clean_name(name: object) -> str:
    """An annotator's name with its whitespace collapsed; refused when empty, too long or
    holding control characters."""
    if not isinstance(name, str):
        raise NameRefused("the annotator's name must be text")
    cleaned = " ".join(name.split())
    if not cleaned:
        raise NameRefused("type your name first (it keeps your verdicts apart from the others')")
    if len(cleaned) > MAX_NAME_CHARS:
        raise NameRefused(f"a name of at most {MAX_NAME_CHARS} characters, please")
    if any(unicodedata.category(c).startswith("C") for c in cleaned):
        raise NameRefused("the name holds control characters")
    return cleaned


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class VerdictLog:
    """The verdicts so far, what each annotator sees next, and the file they are saved in."""

    def __init__(self, path: Path, pairs: Pairs, seed: int) -> None:
        self.path = path
        self.pairs = pairs
        self.seed = seed
        self._by_id = pairs.by_id()
        self.events: list[dict[str, Any]] = []
        self.verdicts: dict[str, dict[str, dict[str, Any]]] = {}  # annotator -> task id -> verdict in force
        self._order: dict[str, list[str]] = {}  # annotator -> task ids of the verdicts in force, oldest first
        self._skips: dict[tuple[str, str], int] = {}
        self._undone: dict[str, str] = {}  # annotator -> the task whose verdict was just undone
        self._lock = threading.Lock()

    @property
    def settings(self) -> dict[str, Any]:
        """What the verdicts are about: a file written for other pairs or another seed is refused."""
        return {"pairs_sha256": self.pairs.digest, "seed": self.seed}

    @classmethod
    def open(cls, path: Path, pairs: Pairs, seed: int) -> VerdictLog:
        """The log at `path` replayed (checked against these pairs and seed), or a new one; a new
        log's file is written with its first event."""
        log = cls(path, pairs, seed)
        if not path.exists():
            return log
        lines = read_jsonl(path, hint="move it away to start afresh")
        if not lines or not isinstance(lines[0][1], dict) or lines[0][1].get("type") != "header":
            raise VerdictLogError(f"{path}: no header line; not a verdicts file (move it away to start afresh)")
        header = lines[0][1]
        recorded = header.get("settings") or {}
        if recorded.get("pairs_sha256") != pairs.digest:
            raise VerdictLogError(
                f"{path}: its verdicts were given on other answers than these ({pairs.source}); "
                f"use another --output_dir for these pairs, or the inputs of the earlier session")
        if recorded.get("seed") != seed:
            raise VerdictLogError(f"{path}: its verdicts were given with --seed {recorded.get('seed')}, not {seed}; "
                                  f"pass --seed {recorded.get('seed')} (or another --output_dir)")
        for number, event in lines[1:]:
            log._apply(event, f"{path}:{number}")
        return log

    # --- replaying and recording -----------------------------------------------------------
    def _apply(self, event: Any, where: str) -> None:
        if not isinstance(event, dict) or event.get("type") not in ("verdict", "skip", "undo"):
            raise VerdictLogError(f"{where}: not a verdict, skip or undo event")
        annotator, task = event.get("annotator"), event.get("task")
        if not isinstance(annotator, str) or task not in self._by_id:
            raise VerdictLogError(f"{where}: names no annotator or a task that is not among these pairs")
        kind = event["type"]
        order = self._order.setdefault(annotator, [])
        if kind == "verdict":
            if event.get("choice") not in CHOICES or event.get("outcome") is None:
                raise VerdictLogError(f"{where}: a verdict without a valid choice and outcome")
            if task in self.verdicts.setdefault(annotator, {}):
                order.remove(task)
            self.verdicts[annotator][task] = event
            order.append(task)
            self._undone.pop(annotator, None)
        elif kind == "skip":
            self._skips[(annotator, task)] = self._skips.get((annotator, task), 0) + 1
            if self._undone.get(annotator) == task:
                del self._undone[annotator]
        else:
            if not order or order[-1] != task:
                raise VerdictLogError(f"{where}: undoes a verdict that is not {annotator}'s latest")
            order.pop()
            del self.verdicts[annotator][task]
            self._undone[annotator] = task
        self.events.append(event)

    def _record(self, event: dict[str, Any]) -> dict[str, Any]:
        """Save the file with `event` added, then count it: a failed write changes nothing."""
        header = {"type": "header", "version": LOG_VERSION, "settings": self.settings,
                  "contestant": self.pairs.contestant_name, "reference": self.pairs.reference_name}
        lines = [json.dumps(e, ensure_ascii=False) for e in (header, *self.events, event)]
        atomic_write_text(self.path, "\n".join(lines) + "\n")
        self._apply(event, "new event")
        return event

    def _pair(self, task: object) -> Pair:
        pair = self._by_id.get(task) if isinstance(task, str) else None
        if pair is None:
            raise RequestError(f"no task {task!r} among these pairs (reload the page)")
        return pair

    # --- what the page asks --------------------------------------------------------------
    def shown(self, annotator: str, pair: Pair) -> tuple[str, str]:
        """The answers `annotator` sees as A (left) and B (right) on this task."""
        if contestant_on_a(self.seed, annotator, pair):
            return pair.contestant, pair.reference
        return pair.reference, pair.contestant

    def next_pair(self, annotator: str) -> Pair | None:
        """The task to show: one whose verdict was just undone, else the first without a verdict
        (skipped ones after the others, least skipped first); None when all have one."""
        with self._lock:
            done = self.verdicts.get(annotator, {})
            undone = self._undone.get(annotator)
            if undone is not None and undone not in done:
                return self._by_id[undone]
            open_pairs = [p for p in self.pairs.pairs if p.task_id not in done]
            if not open_pairs:
                return None
            return min(open_pairs, key=lambda p: (self._skips.get((annotator, p.task_id), 0), p.index))

    def progress(self, annotator: str) -> tuple[int, int]:
        """(verdicts given by `annotator`, tasks in all)."""
        with self._lock:
            return len(self.verdicts.get(annotator, {})), len(self.pairs.pairs)

    def give(self, annotator: str, task: object, choice: object) -> dict[str, Any]:
        """Record `annotator`'s choice on a task (replacing an earlier verdict on it), saved at once."""
        pair = self._pair(task)
        if choice not in CHOICES:
            raise RequestError(f"the choice must be one of {', '.join(CHOICES)}")
        with self._lock:
            on_a = contestant_on_a(self.seed, annotator, pair)
            return self._record({
                "type": "verdict", "annotator": annotator, "task": pair.task_id, "index": pair.index,
                "choice": choice, "contestant_side": "A" if on_a else "B",
                "outcome": outcome_for_choice(str(choice), on_a), "time": _now()})

    def skip(self, annotator: str, task: object) -> None:
        """Put a task after the others for `annotator` (saved, so a reload keeps the order)."""
        pair = self._pair(task)
        with self._lock:
            self._record({"type": "skip", "annotator": annotator, "task": pair.task_id, "index": pair.index,
                          "time": _now()})

    def undo(self, annotator: str) -> Pair | None:
        """Take back `annotator`'s latest verdict in force; its task is shown next. None when
        there is nothing to undo."""
        with self._lock:
            order = self._order.get(annotator) or []
            if not order:
                return None
            pair = self._by_id[order[-1]]
            self._record({"type": "undo", "annotator": annotator, "task": pair.task_id, "index": pair.index,
                          "time": _now()})
            return pair

    def in_force(self) -> dict[str, dict[str, dict[str, Any]]]:
        """A copy of annotator -> task id -> verdict event, for the verdicts in force (not undone)."""
        with self._lock:
            return {name: dict(tasks) for name, tasks in self.verdicts.items() if tasks}


def outcomes_of(in_force: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, str]]:
    """annotator -> task id -> the contestant's outcome (win, loss, tie, both_bad)."""
    return {name: {task: v["outcome"] for task, v in tasks.items()} for name, tasks in in_force.items()}
