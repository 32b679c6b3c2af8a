"""Run a command and measure its peak anonymous memory (RssAnon), the memory the kernel cannot drop.

Linux keeps a high-water mark only for total RSS (VmHWM), which also counts the pages of
memory-mapped files: reading a mapped checkpoint raises it although the kernel can drop those
pages at any time. So the peak of RssAnon is sampled instead, from this (separate) process,
every millisecond, from /proc/<pid>/status. Sampling can only miss a peak shorter than the
interval; the recover stage's allocations are row slices that live while they are hashed and
written (tens of milliseconds for a few MB), so they are seen. VmHWM is reported too, as an
upper bound that includes the file pages.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_FIELDS = ("RssAnon", "RssFile", "VmHWM")


@dataclass(frozen=True)
class Measured:
    """Outcome of one measured run (memory in bytes)."""

    returncode: int
    seconds: float
    peak_rss_anon: int
    peak_rss_file: int
    vm_hwm: int
    samples: int
    stdout: str
    stderr: str


def _read_status(pid: int) -> dict[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    values = {}
    for field in _FIELDS:
        match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
        if match:
            values[field] = int(match.group(1)) * 1024
    return values if len(values) == len(_FIELDS) else None


def run_measured(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 interval_s: float = 0.001, timeout_s: float = 1800) -> Measured:
    """Run `cmd` to completion, sampling its RssAnon every `interval_s`; return the peaks."""
    start = time.perf_counter()
    with open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=devnull, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    peak = {field: 0 for field in _FIELDS}
    samples = 0
    # Pipes are drained by threads so a chatty child never blocks on a full pipe.
    import threading

    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((proc.stdout, out), (proc.stderr, err))]
    for reader in readers:
        reader.start()
    while proc.poll() is None:
        values = _read_status(proc.pid)
        if values:
            samples += 1
            for field in _FIELDS:
                peak[field] = max(peak[field], values[field])
        if time.perf_counter() - start > timeout_s:
            proc.kill()
            break
        time.sleep(interval_s)
    proc.wait()
    for reader in readers:
        reader.join()
    return Measured(proc.returncode, time.perf_counter() - start, peak["RssAnon"], peak["RssFile"],
                    peak["VmHWM"], samples, "".join(out), "".join(err))


def run_recover_cli(repo_root: Path, raw: Path, diff: Path, out: Path, *flags: str) -> Measured:
    """`python -m recover recover` in a subprocess, as a user runs it, with its peak RssAnon sampled."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo_root))
    cmd = [sys.executable, "-m", "recover", "recover", "--path_raw", str(raw), "--path_diff", str(diff),
           "--path_tuned", str(out), *flags]
    return run_measured(cmd, env=env, cwd=repo_root)
