"""`python -m assess.human`: read the pairs, continue the verdicts, serve the page until stopped,
then write human_summary.json; one line for a user's mistake."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from assess.human.config import COMMAND, HumanConfig
from assess.human.pairs import load_pairs
from assess.human.summary import SUMMARY_NAME, SummaryWriter, write_summary
from assess.human.verdicts import VERDICTS_NAME, VerdictLog
from core import flags
from core.exit_codes import (
    EXIT_OK,
    UserError,
    error_line,
    interrupt_status,
    sigterm_raises,
)
from core.files import missing_dirs, remove_empty_dirs

PROG = "assess.human"
logger = logging.getLogger(__name__)


def headline(summary: dict[str, Any]) -> str:
    """One line: how far the people got and what they say."""
    results = summary["results"]
    people = len(summary["annotators"])
    verdicts = results["verdicts"]
    line = (f"{summary['contestant']} vs {summary['reference']}: {verdicts} verdict{'s' * (verdicts != 1)} by "
            f"{people} annotator{'s' * (people != 1)} on {summary['tasks_with_verdicts']} of {summary['tasks']} tasks")
    if results["win_rate"] is None:
        return line
    line += (f"; win rate {results['win_rate']:.3f} ({results['wins']} wins, {results['ties']} ties, "
             f"{results['losses']} losses)")
    overall = (summary["agreement"] or {}).get("overall")
    if overall:
        line += f"; annotators agree on {overall['agreement']:.2f} of {overall['tasks']} shared verdicts"
    judge = ((summary.get("judge_agreement") or {}).get("overall"))
    if judge:
        line += f"; the judge agrees with {judge['agreement']:.2f} of their verdicts"
    return line


def _serve(config: HumanConfig, log: VerdictLog, summary_path: Path) -> int:
    from assess.human.server import check_installed, create_app, listen, run, url_of

    check_installed()
    sock = listen(config.host, config.port)
    writer = SummaryWriter(summary_path, log.pairs, log, config.bootstrap_samples, config.seed)
    status = EXIT_OK
    try:
        app = create_app(log, writer.request)
        done = sum(len(v) for v in log.in_force().values())
        print(f"{log.pairs.contestant_name} vs {log.pairs.reference_name}: {len(log.pairs.pairs)} tasks, "
              f"{done} verdict{'s' * (done != 1)} so far; open {url_of(sock)} (Ctrl-C stops; verdicts go to "
              f"{log.path})", flush=True)
        if config.host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("listening on %s: anyone who can reach this machine can open the page and annotate",
                           config.host)
        try:
            with sigterm_raises():
                run(app, sock, config.log_level == "debug")
        except KeyboardInterrupt as err:  # uvicorn stopped gracefully and passed the signal on
            status = interrupt_status(err)
    finally:
        sock.close()
        summary = writer.close()
    print(headline(summary) + f"; summary in {summary_path}", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parsed = flags.parse_or_exit_status(COMMAND, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    config: HumanConfig = parsed.config
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    output_dir = Path(config.output_dir).expanduser()
    new_dirs = missing_dirs(output_dir)
    try:
        pairs = load_pairs(config)
        log = VerdictLog.open(output_dir / VERDICTS_NAME, pairs, config.seed)
        if not config.serve:
            summary = write_summary(output_dir / SUMMARY_NAME, pairs, log, config.bootstrap_samples, config.seed)
            print(headline(summary))
            return EXIT_OK
        return _serve(config, log, output_dir / SUMMARY_NAME)
    except UserError as err:
        remove_empty_dirs(new_dirs)  # a page that never started leaves no folder behind
        print(error_line(PROG, err), file=sys.stderr)
        return err.exit_code
