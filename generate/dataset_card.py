"""The dataset card: README.md beside alpaca_data.json, in the Hugging Face dataset-card format,
so the run's folder uploads as it is (`huggingface-cli upload --repo-type dataset NAME DIR`).

The YAML header carries what the Hub indexes (license, language, task category, size category,
the data file); the body says how the data was made: the model, prompt, seed tasks and
settings, what it cost, what the filters rejected, the defects left in the kept data, the
report's main figures and the known limitations. Every count and cost is the run's own
(generate_summary.json; the report's figures computed from the folder as
`python -m generate.report` computes them), written again at the end of every run.

The license is "other" until the user picks one: the data was written by a model whose terms
may restrict its use. A license set by hand in the card's header is kept by later runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from core.cards.front_matter import CARD_NAME, read_card, write_card
from generate.config import GenerateConfig
from generate.quality.report.languages import TOO_SHORT
from generate.quality.report.load import load_run
from generate.quality.report.stats import Stats, compute_stats
from generate.seeds.language import resolve_language
from generate.seeds.tasks import load_seed_tasks
from generate.store import DATA_NAME, REPORT_NAME

log = logging.getLogger(__name__)

DEFAULT_LICENSE = "other"
TOP_VERBS_SHOWN = 10
# A language this share of the kept instructions is in is named in the card beside the run's.
DATA_LANGUAGE_SHARE = 0.1
# The Hub's size categories: (upper bound, label).
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"))


def size_category(n: int) -> str:
    """The Hub's size category of a dataset of `n` examples."""
    return next((label for bound, label in SIZE_CATEGORIES if n < bound), "n>10M")


def _median(values: list[int]) -> float | int | str:
    return statistics.median(values) if values else "n/a (no examples)"


def _kept_license(path: Path) -> str:
    """The license in an existing card's header when the user set one, else the default."""
    if not path.is_file():
        return DEFAULT_LICENSE
    try:
        header, _ = read_card(path)
    except Exception:  # noqa: BLE001 - an unreadable old card is replaced
        return DEFAULT_LICENSE
    return str(header.get("license") or DEFAULT_LICENSE)


def languages_found(stats: Stats, run_language: str) -> list[tuple[str, int]]:
    """Languages other than the run's that at least DATA_LANGUAGE_SHARE of the kept instructions
    were identified in (a model that drifted while the language check was off), most first."""
    found = stats.language.kept.get("instruction", Counter())
    judged = sum(count for code, count in found.items() if code != TOO_SHORT)
    return [(code, count) for code, count in found.most_common()
            if code not in (TOO_SHORT, run_language) and count >= DATA_LANGUAGE_SHARE * judged]


def card_header(config: GenerateConfig, kept: int, license_id: str,
                also: list[tuple[str, int]] = ()) -> dict[str, Any]:
    """The YAML header: what the Hub reads. `also`: languages the data holds besides the run's."""
    header: dict[str, Any] = {"license": license_id}
    if license_id == "other":
        header["license_name"] = "generated-data"
    header["pretty_name"] = f"{Path(config.output_dir).resolve().name} (Alpaca-format instructions)"
    languages = [code for code in (config.language, *(code for code, _ in also)) if len(code) == 2]
    if languages:  # ISO 639-1 codes; "other" is none
        header["language"] = languages
    header["task_categories"] = ["text-generation"]
    header["size_categories"] = [size_category(kept)]
    header["tags"] = ["alpaca", "self-instruct", "synthetic", "instruction-tuning"]
    header["configs"] = [{"config_name": "default", "data_files": DATA_NAME}]
    return header


def _language_name(summary: dict[str, Any], config: GenerateConfig, stats: Stats) -> str:
    name = (summary.get("language") or {}).get("name")
    text = f"{name} ({config.language})" if name else config.language
    also = languages_found(stats, config.language)
    if also:
        text += (" for the seed tasks; of the kept instructions, " + ", ".join(
            f"{count} of {stats.language.identified} read as {code}" for code, count in also))
    return text


def _row(name: str, value: Any) -> str:
    return f"| {name} | {value} |"


def card_body(config: GenerateConfig, summary: dict[str, Any], stats: Stats, seeds: int, prompt_sha: str,
              license_id: str) -> str:
    """The Markdown: how the data was made, and what to know before using it."""
    name = Path(config.output_dir).resolve().name
    kept, cost = summary["kept"], summary.get("estimated_cost_usd")
    unit = stats.unit
    cost_text = "unknown (no price for this model)" if cost is None else f"${cost:.4f}"
    if summary.get("backend") == "batch" and cost is not None:
        cost_text += " (Batch API: half price)"
    lines = [f"# {name}", "",
             f"{kept} instruction-following examples (`instruction`, `input`, `output`) written by "
             f"`{summary['model']}` with self-instruct from {seeds} seed tasks, in the format of Stanford "
             f"Alpaca's data. Language: {_language_name(summary, config, stats)}.", "",
             "## Dataset structure", "",
             f"`{DATA_NAME}`: a JSON list of {kept} objects with three strings each: `instruction` (the task), "
             f"`input` (its context, `\"\"` when it needs none: {stats.with_input} of {kept} have one) and `output` "
             "(the answer).", "",
             "## How it was made", "", "| setting | value |", "|---|---|",
             _row("generator model", f"`{summary['model']}`"),
             _row("backend / API", f"{summary['backend']} / {summary.get('api')}"),
             _row("prompt", f"`{Path(config.prompt_path).name}` (sha256 {prompt_sha})"),
             _row("seed tasks", f"`{Path(config.seed_tasks_path).name}`: {seeds} tasks"),
             _row("language", config.language),
             _row("seed tasks per prompt", config.num_prompt_instructions),
             _row("prompts per request", config.request_batch_size),
             _row("temperature / top_p", f"{config.temperature} / {config.top_p}"),
             _row("max answer tokens", config.max_tokens),
             _row("seed", config.seed),
             _row("dedup", f"ROUGE-L > {config.similarity_threshold} to a seed or an earlier kept instruction is "
                           f"dropped ({config.dedup_tokenizer} tokenizer)"),
             _row("quality filters", config.quality_filters), "",
             "## Cost", "", "| measure | value |", "|---|---|",
             _row("target", summary["target"]),
             _row("kept", kept),
             _row("requests", summary["requests"]),
             _row("prompt tokens", summary["prompt_tokens"]),
             _row("completion tokens", summary["completion_tokens"]),
             _row("estimated cost", cost_text), "",
             "## Filters and what they rejected", "",
             "Each generated candidate went through the reference's filters (length, blacklisted words, "
             "banned starts, punctuation), the defect detectors, the language check where the run has one and "
             "the ROUGE-L dedup.", "",
             "| rejected because | candidates |", "|---|---|"]
    rejected = {reason: count for reason, count in (summary.get("rejected") or {}).items() if count}
    lines += [_row(reason, count) for reason, count in sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0]))]
    lines += [_row("total", sum(rejected.values())), "", "## Defects found in the kept data", ""]
    if stats.defects:
        lines += ["| defect | examples |", "|---|---|"]
        lines += [_row(reason, count) for reason, count in stats.defects.most_common()]
        lines += ["", "`python -m generate.clean` writes a copy without them."]
    else:
        lines.append("None of the defect detectors fires on the kept examples.")
    lengths = stats.lengths
    inputs = [v for v in lengths["input"] if v > 0]
    lines += ["", "## Main figures", "", f"(from the report, `{REPORT_NAME}`, which has the plots)", "",
              "| figure | value |", "|---|---|",
              _row(f"median instruction length ({unit})", _median(lengths["instruction"])),
              _row(f"median input length, non-empty inputs ({unit})", _median(inputs) if inputs else "n/a (no inputs)"),
              _row(f"median output length ({unit})", _median(lengths["output"])),
              _row("instructions whose leading verb was found",
                   f"{100 * stats.verb_share:.1f}%" if lengths["instruction"] else "n/a (no examples)")]
    nearest = stats.rouge_seed + stats.rouge_kept
    if nearest:
        lines.append(_row("median ROUGE-L to the nearest seed or earlier instruction", f"{statistics.median(nearest):.3f}"))
    if stats.verbs:
        lines.append(_row("most common leading verbs", ", ".join(f"{verb} ({count})"
                                                                  for verb, count, _ in stats.verbs[:TOP_VERBS_SHOWN])))
    lines += ["", "## Known limitations", "",
              f"- Written by a model (`{summary['model']}`), checked by rules, not by people: answers can be wrong, "
              "outdated or biased, and instructions repeat the seed tasks' patterns.",
              "- The model's provider may restrict what its outputs can be used for (training competing models, "
              "for example): read its terms before publishing or training on this data.",
              f"- Coverage follows the {seeds} seed tasks: topics and task types they lack are rare here."]
    if not summary.get("finished"):
        lines.append(f"- The run stopped before its target ({summary.get('stopped_by')}): {kept} of "
                     f"{summary['target']} examples.")
    lines += ["", "## License", ""]
    if license_id == DEFAULT_LICENSE:
        lines.append("Not chosen yet: set `license` in the header above (it is kept when the run continues).")
    else:
        lines.append(f"`{license_id}`, as set in the header above.")
    return "\n".join(lines) + "\n"


def write_dataset_card(config: GenerateConfig, summary: dict[str, Any]) -> Path | None:
    """The end-of-run hook of `python -m generate`: write the card, log (never raise) a failure."""
    folder = Path(config.output_dir)
    try:
        tasks = load_seed_tasks(Path(config.seed_tasks_path))
        # The language the run settled on (its summary says it; the seeds decide it the same way).
        resolved, _ = resolve_language(config, [task.instruction for task in tasks])
        code = (summary.get("language") or {}).get("code")
        if code and code != resolved.language:
            resolved = dataclasses.replace(resolved, language=code)
        prompt_sha = hashlib.sha256(Path(resolved.prompt_path).read_bytes()).hexdigest()[:12]
        stats = compute_stats(load_run(folder))
        path = folder / CARD_NAME
        license_id = _kept_license(path)
        write_card(path, card_header(resolved, summary["kept"], license_id,
                                     languages_found(stats, resolved.language)),
                   card_body(resolved, summary, stats, len(tasks), prompt_sha, license_id))
    except Exception as err:  # noqa: BLE001 - the data is written; a card problem must not fail the run
        log.warning("could not write the dataset card in %s: %s", folder, err)
        return None
    log.info("dataset card: %s", path)
    return path
