"""A run folder's report, built: load, compute, plot, render, write atomically."""

from __future__ import annotations

import logging
from pathlib import Path

from core.files import atomic_write_text
from generate.quality.report.load import load_run
from generate.quality.report.page import render_html
from generate.quality.report.plots import render_plots
from generate.quality.report.stats import compute_stats
from generate.store import REPORT_NAME

log = logging.getLogger(__name__)


def build_report(folder: Path, output: Path | None = None) -> Path:
    """Write the report for a run folder; returns its path. A one-line InputError on unusable input."""
    run = load_run(folder)
    stats = compute_stats(run)
    plots = render_plots(run, stats)
    path = output or folder / REPORT_NAME
    atomic_write_text(path, render_html(run, stats, plots))
    return path


def write_run_report(folder: str | Path) -> Path | None:
    """The end-of-run hook of `python -m generate`: write the report, log (never raise) a failure."""
    try:
        path = build_report(Path(folder))
    except Exception as err:  # noqa: BLE001 - the data is written; a report problem must not fail the run
        log.warning("could not write the report in %s: %s", folder, err)
        return None
    return path
