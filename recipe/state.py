"""What the runner remembers between runs: per stage, the settings it last ran with and whether it
finished (`<workdir>/recipe_state.json`, rewritten atomically after every change), and one lock
so that two runs never work in the same folder at once."""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.exit_codes import InputError
from core.files import atomic_write_json

STATE_NAME = "recipe_state.json"
LOCK_NAME = ".recipe.lock"


def fingerprint(settings: dict[str, str], upstream: list[str]) -> str:
    """A stage's identity: its settings and the identities of the stages it reads from."""
    payload = json.dumps({"settings": settings, "upstream": upstream}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclass
class StageRecord:
    """A stage as the last run left it."""

    fingerprint: str
    settings: dict[str, str]
    status: str  # "started" (running, killed or failed) or "done"
    finished_at: float | None = None
    elapsed_s: float | None = None


@dataclass
class RecipeState:
    """Every stage's record, in the workdir."""

    path: Path
    stages: dict[str, StageRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, workdir: Path) -> RecipeState:
        path = Path(workdir) / STATE_NAME
        if not path.is_file():
            return cls(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            stages = {name: StageRecord(**record) for name, record in raw["stages"].items()}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"{path}: not a state file of this runner ({err}); remove it to run every stage "
                             "again") from None
        return cls(path, stages)

    def save(self) -> None:
        payload: dict[str, Any] = {"stages": {name: vars(record) for name, record in self.stages.items()}}
        atomic_write_json(self.path, payload)

    def started(self, name: str, digest: str, settings: dict[str, str]) -> None:
        self.stages[name] = StageRecord(digest, settings, "started")
        self.save()

    def finished(self, name: str, elapsed_s: float) -> None:
        record = self.stages[name]
        record.status, record.finished_at, record.elapsed_s = "done", time.time(), round(elapsed_s, 3)
        self.save()


def changed_settings(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The names whose values differ between two settings dicts (added and removed ones included)."""
    return sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))


@contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    """Hold the workdir's lock for the run; another run there is refused at once. The kernel
    drops the lock when the process dies, however it dies (kill -9 included)."""
    workdir.mkdir(parents=True, exist_ok=True)
    handle = (workdir / LOCK_NAME).open("a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{workdir}: another recipe run is working in this folder; wait for it to end") from None
        yield
    finally:
        handle.close()
