"""`python -m recover` that pauses once its output is half written: for interruption tests.

    python -m tests.recover.paused_recover READY_FILE recover --path_raw ... --path_tuned OUT

Runs the real command line (`recover.cli.main`), except that after the weights and config are
written into the hidden temporary directory, and before the tokenizer files follow, it writes
that directory's path to READY_FILE and sleeps: the test then sends SIGTERM, SIGINT or SIGKILL
to a process whose partial output is on disk.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import recover.apply_diff as apply_diff
from recover.cli import main

_copy_sidecars = apply_diff.copy_sidecars


def _pause_then_copy(source: Path, target: Path) -> list[str]:
    Path(sys.argv[1]).write_text(str(target))
    time.sleep(600)
    return _copy_sidecars(source, target)


if __name__ == "__main__":
    apply_diff.copy_sidecars = _pause_then_copy
    sys.exit(main(sys.argv[2:]))
