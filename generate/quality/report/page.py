"""The report as one self-contained HTML page: facts, tables and the plots as data URIs."""

from __future__ import annotations

import base64
import html
from typing import Any

from generate.quality.detectors import DEFECT_DESCRIPTIONS, DEFECT_REASONS
from generate.quality.report.function_words import FUNCTION_WORDS
from generate.quality.report.load import RunData
from generate.quality.report.selection import render_selection
from generate.quality.report.stats import Stats
from generate.store import NEIGHBOURS_NAME, SCORES_NAME

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", sans-serif;
       max-width: 1100px; margin: 24px auto; padding: 0 16px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd; padding: 4px 8px;
       text-align: left; vertical-align: top; font-size: 0.9em; }
th { background: #f5f5f5; } img { max-width: 100%; } .note { color: #555; font-size: 0.9em; }
pre { white-space: pre-wrap; margin: 0; font-size: 0.85em; max-height: 9em; overflow: auto; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + " …"


def _img(name: str, png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img id="plot-{name}" alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def render_html(run: RunData, stats: Stats, plots: dict[str, bytes]) -> str:
    """The report page (plots embedded as data URIs)."""
    summary = run.summary or {}
    total = len(run.items)
    facts = [
        ("folder", str(run.folder)),
        ("items kept", f"{total}" + (f" of {summary['target']} targeted" if summary.get("target") else "")),
        ("model", f"{summary.get('model', '?')} ({summary.get('backend', '?')}, {summary.get('api', '?')} API)"
         if summary else "no generate_summary.json"),
        ("finished", summary.get("finished", "?") if summary else "?"),
        *([("stopped by", f"{summary['stopped_by']}" + (f": {summary['error']}" if summary.get("error") else ""))]
          if summary.get("stopped_by") not in (None, "target") else []),
        ("requests", summary.get("requests", "?") if summary else "?"),
        ("estimated cost", "unknown" if stats.cost_usd is None else f"${stats.cost_usd:.4f}"),
        ("cost per kept item", "unknown" if stats.cost_per_kept is None else f"${stats.cost_per_kept:.6f}"),
        ("language", f"{stats.language.code} ({stats.language.name}), {stats.language.source}"),
        ("language settings", stats.language.settings or "unknown (no generate_summary.json)"),
        ("language check", _check_fact(stats)),
        ("length unit", stats.unit),
        ("items with an input", f"{stats.with_input} ({100 * stats.with_input / total:.1f}%)" if total else "0"),
    ]
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in facts)
    # Inputs: the median of the non-empty ones, as the lengths plot shows them.
    lengths = "".join(
        f"<tr><th>{key}{' (non-empty)' if key == 'input' else ''}</th>"
        f"<td>{_median([v for v in values if v > 0] if key == 'input' else values)}</td>"
        f"<td>{max(values, default='n/a')}</td></tr>"
        for key, values in stats.lengths.items()
    )
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Data report: {_esc(run.folder.name)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Data report: {_esc(run.folder.name)}</h1>",
        f"<table id=\"facts\">{rows}</table>",
        '<h2 id="diversity">Diversity</h2>',
        (f'<p class="note">Leading verb and its object by a heuristic (no parser): {_verb_rule(stats)} '
         f'A verb was found in {100 * stats.verb_share:.1f}% of the instructions.</p>'),
        _img("diversity", plots["diversity"], "leading verbs and their objects"),
        _verb_table(stats),
        '<h2 id="rouge">Similarity to the nearest instruction</h2>',
        f'<p class="note">From {NEIGHBOURS_NAME}: the ROUGE-L F of each kept instruction to its most similar '
        f'seed task or earlier kept instruction, the score the dedup compared with its threshold; left the items '
        f'whose nearest is a seed task, right those whose nearest is an earlier kept instruction.'
        + ("" if run.neighbours else f" <b>{NEIGHBOURS_NAME} was not found: no scores.</b>") + "</p>",
        _img("rouge", plots["rouge"], "ROUGE-L to the nearest seed and kept instruction"),
        '<h2 id="lengths">Lengths</h2>',
        f'<table><tr><th>field ({stats.unit})</th><th>median</th><th>max</th></tr>{lengths}</table>',
        _img("lengths", plots["lengths"], "lengths of instruction, input and output"),
        '<h2 id="rejections">Rejections and cost</h2>',
        '<p class="note">Candidates rejected during generation, by reason (from generate_summary.json).</p>'
        if run.summary else '<p class="note"><b>generate_summary.json was not found.</b></p>',
        _img("rejections", plots["rejections"], "rejections by reason"),
        '<h2 id="languages">Languages</h2>',
        _language_tables(stats),
        '<h2 id="defects">Defects</h2>',
        ('<p class="note">The detectors of generate/quality/detectors.py run on the kept items (a run with '
         '<code>--quality_filters on</code> has already removed them; <code>python -m generate.clean</code> '
         'removes them from any file); examples marked [rejected] come from the answers generation '
         'rejected.</p>'),
        *_quality_settings(stats),
        _img("defects", plots["defects"], "defect counts by class"),
        _defect_table(stats, summary.get("rejected_by_rule") or {}),
    ]
    if "scores" in plots:
        rated = run.rate_summary or {}
        kept = (f" {rated['kept']} of {rated['items']} items scored at least {rated['min_score']:g}: "
                f"{_esc(rated['filtered'])}." if {"kept", "items", "min_score", "filtered"} <= set(rated) else "")
        parts += ['<h2 id="scores">Judge scores</h2>',
                  f'<p class="note">From {SCORES_NAME} (python -m generate.rate).{kept}</p>',
                  _img("scores", plots["scores"], "judge score histogram")]
    parts += [render_selection(selection) for selection in run.selections]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _check_fact(stats: Stats) -> str:
    check = stats.language.check
    if not check:
        return "unknown (no generate_summary.json)"
    if not check.get("enabled"):
        return str(check.get("why", "off"))
    return (f"on: instructions in {', '.join(check.get('instruction_languages', []))}, outputs in "
            f"{', '.join(check.get('output_languages', []))}; rejected: {stats.rejected.get('wrong_language', 0)}")


def _verb_rule(stats: Stats) -> str:
    code = stats.language.code
    if code in ("zh", "ja"):
        return "the first one or two characters, and the two after numerals and measure words."
    if code in FUNCTION_WORDS:
        return (f"the first word after polite fillers, and the next word that is not a determiner, pronoun, "
                f"number, preposition or common adjective ({stats.language.name} word lists).")
    return (f"no word lists for {_esc(stats.language.name)}: the first word, and the next word of four letters "
            f"or more.")


def _language_tables(stats: Stats) -> str:
    language = stats.language
    kept = language.kept
    names = sorted(set(kept.get("instruction", {})) | set(kept.get("output", {})),
                   key=lambda name: (-kept["instruction"].get(name, 0) - kept["output"].get(name, 0), name))
    rows = "".join(f"<tr><td>{_esc(name)}</td><td>{kept['instruction'].get(name, 0)}</td>"
                   f"<td>{kept['output'].get(name, 0)}</td></tr>" for name in names)
    rejected = "".join(f"<tr><td>{_esc(name)}</td><td>{fields.get('instruction', 0)}</td>"
                       f"<td>{fields.get('output', 0)}</td></tr>" for name, fields in language.rejected.items())
    total = sum(sum(fields.values()) for fields in language.rejected.values())
    return (
        f'<p class="note">The kept items\' instructions and outputs by the language py3langid ranks first among '
        f'the run\'s candidates (quoted passages and code left out; {language.identified} of '
        f'{len(stats.lengths["instruction"])} items).</p>'
        f'<table id="kept-languages"><tr><th>language</th><th>instructions</th><th>outputs</th></tr>{rows}</table>'
        f'<p class="note">Rejected as <code>wrong_language</code> during generation, by the language found '
        f'({total} in all):</p>'
        + (f'<table id="rejected-languages"><tr><th>language</th><th>instruction</th><th>output</th></tr>'
           f'{rejected}</table>' if rejected else '<p class="note">none</p>'))


def _median(values: list[int]) -> float | int | str:
    if not values:  # no item (or no input): a length of 0 would be a claim about data that is not there
        return "n/a"
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _verb_table(stats: Stats) -> str:
    rows = "".join(
        f"<tr><td>{_esc(verb)}</td><td>{count}</td><td>{_esc(', '.join(f'{obj} ({n})' for obj, n in objects))}</td></tr>"
        for verb, count, objects in stats.verbs
    )
    return (f'<details><summary>The same as a table</summary><table id="verbs"><tr><th>verb</th><th>items</th>'
            f"<th>most frequent objects</th></tr>{rows}</table></details>")


def _quality_settings(stats: Stats) -> list[str]:
    """The rules this run did not apply, and why (from generate_summary.json)."""
    lines = [f'<p class="note" id="relaxed-{_esc(r.rule)}">Relaxed for this run by the seed tasks: <b>{_esc(r.rule)}</b> '
             f'({_esc(r.reason)}): the domain answers this way, so it was neither filtered in generation nor '
             f'counted below.</p>' for r in stats.quality.relaxed]
    if stats.quality.disabled:
        lines.append(f'<p class="note">Switched off by --quality_disable: '
                     f'<b>{_esc(", ".join(sorted(stats.quality.disabled)))}</b>.</p>')
    return lines


def _field(item: dict[str, Any], key: str, limit: int) -> str:
    """One field, escaped and shortened; the evidence's span marked when it lies in this field."""
    text = str(item.get(key, ""))
    evidence = item.get("evidence")
    if isinstance(evidence, dict) and evidence.get("field") == key and isinstance(evidence.get("span"), list):
        start, end = (int(n) for n in evidence["span"][:2])
        if 0 <= start <= end <= len(text):
            before = text[:start] if start <= limit // 2 else "… " + text[start - limit // 2:start]
            after = _short(text[end:], max(limit - len(before) - (end - start), 40))
            return f"{_esc(before)}<mark>{_esc(_short(text[start:end], limit))}</mark>{_esc(after)}"
    return _esc(_short(text, limit))


def _example(item: dict[str, Any], label: str) -> str:
    evidence = item.get("evidence")
    rule = f" [{_esc(evidence.get('rule'))}]" if isinstance(evidence, dict) else ""
    return (f"<pre>{label}{_field(item, 'instruction', 160)}\n-- input: {_field(item, 'input', 160)}\n"
            f"-- output: {_field(item, 'output', 300)}{rule}</pre>")


def _defect_table(stats: Stats, by_rule: dict[str, Any]) -> str:
    rows = []
    for name in DEFECT_REASONS:
        cells = "".join(_example(item, "") for item in stats.examples.get(name, []))
        cells += "".join(_example(item, "[rejected] ") for item in stats.rejected_examples.get(name, []))
        rejected = stats.rejected.get(name)
        rules = ", ".join(f"{rule.split('.', 1)[1]} {count}" for rule, count in by_rule.items()
                          if rule.startswith(name + ".") and count)
        rows.append(f"<tr><th>{name}</th><td>{stats.defects.get(name, 0)}</td>"
                    f"<td>{'—' if rejected is None else rejected}{f' ({_esc(rules)})' if rules else ''}</td>"
                    f"<td>{_esc(DEFECT_DESCRIPTIONS[name])}</td><td>{cells or '—'}</td></tr>")
    return ("<table><tr><th>class</th><th>in the kept data</th><th>rejected in generation</th><th>rule</th>"
            "<th>examples ([rejected]: from the run's raw answers)</th></tr>" + "".join(rows) + "</table>")
