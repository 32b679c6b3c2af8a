"""The model card (README.md in the Hugging Face format) of what the pipeline publishes.

A card is rendered from facts, never typed by hand: the training run leaves them in
`model_card.json` beside the weights (base model and its license, the data and its card, the
run's figures from train_summary.json, the hardware, the loss curve), and each later step adds
what it knows and renders the card again:

- an eval run of that very model (`eval_summary.json`: win rate with its standard error and
  interval, the length-controlled rate when the eval computed one, judge, reference);
- the recipe that made it (`recipe.yaml`, copied beside the weights);
- `make_diff`: the same card for the diff, with how to rebuild the model; `recover`: the
  model's card again for the recovered weights.

Roles: "model" (full weights), "adapter" (a LoRA adapter), "diff" (a weight or adapter diff).
Every number shown comes from those summary files, rounded for reading; the YAML header keeps
the eval figures unrounded (`model-index`), so the Hub shows them.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from core.cards.front_matter import CARD_NAME, read_card, write_card
from core.cards.loss_curve import LOSS_CURVE_NAME
from core.exit_codes import UserError
from core.files import atomic_write_json
from core.language_id import languages_of
from core.prompt_format import PROMPT_NO_INPUT
from core.records import read_examples

logger = logging.getLogger(__name__)

FACTS_NAME = "model_card.json"
RECIPE_COPY = "recipe.yaml"
EVAL_SUMMARY = "eval_summary.json"
DATA_SUMMARY = "generate_summary.json"

# train_summary.json keys the card shows (or uses to say how the model was trained).
TRAINING_KEYS = ("world_size", "fsdp", "deepspeed", "packing", "precision", "device", "train_loss", "final_loss",
                 "steps", "effective_batch_size", "supervised_tokens", "examples", "examples_read",
                 "dropped_examples", "truncated_examples", "elapsed_s", "lora", "trainable_params", "total_params")


# --- facts ----------------------------------------------------------------------------------

def read_facts(folder: Path) -> dict[str, Any] | None:
    """The facts a card was rendered from, or None for a folder without one."""
    path = Path(folder) / FACTS_NAME
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return facts if isinstance(facts, dict) else None


def base_license(base: str) -> str | None:
    """The license a local base model's own card declares (its README.md header), if any."""
    card = Path(base).expanduser() / CARD_NAME
    if not card.is_file():
        return None
    try:
        header, _ = read_card(card)
    except Exception:  # noqa: BLE001 - someone else's card: unreadable means unknown, not an error
        return None
    value = header.get("license")
    return str(value) if value else None


def _languages_of_data(data: Path) -> list[str]:
    """The languages of a training file's instructions and outputs (`core.language_id`); empty
    when the file cannot be read (the training run has said why already)."""
    try:
        items = read_examples(data)
    except (UserError, OSError):
        return []
    texts = [str(item.get(key) or "") for item in items[:200] for key in ("instruction", "output")]
    return languages_of(texts)


def dataset_facts(data_path: str) -> dict[str, Any]:
    """What the model card says about its training data: the file, and when a generate run wrote
    it, that run's dataset card and summary (examples kept, the model that wrote them, the cost)."""
    data = Path(data_path).expanduser()
    facts: dict[str, Any] = {"path": str(data)}
    card = data.parent / CARD_NAME
    if card.is_file():
        try:
            header, _ = read_card(card)
        except Exception:  # noqa: BLE001 - a card we cannot read is left out, the data is still named
            header = {}
        if header.get("task_categories"):
            facts["card"] = str(card)
            facts.update({key: header[key] for key in ("pretty_name", "license", "language") if key in header})
    if "language" not in facts:  # hand-made data (no generate run's card): the data says it
        languages = _languages_of_data(data)
        if languages:
            facts["language"] = languages
    summary = data.parent / DATA_SUMMARY
    if summary.is_file():
        try:
            run = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            run = {}
        facts.update({"examples": run.get("kept"), "generator_model": run.get("model"),
                      "generation_cost_usd": run.get("estimated_cost_usd")})
    return facts


def training_facts(*, name: str, role: str, base_model: str, data_path: str, summary: dict[str, Any],
                   hardware: dict[str, Any], loss_curve: bool) -> dict[str, Any]:
    """The facts of a model (or adapter) a training run has just written."""
    return {
        "name": name,
        "role": role,
        "base_model": base_model,
        "base_license": base_license(base_model),
        "dataset": dataset_facts(data_path),
        "training": {key: summary.get(key) for key in TRAINING_KEYS if key in summary},
        "hardware": hardware,
        "loss_curve": LOSS_CURVE_NAME if loss_curve else None,
        "recipe": None,
        "eval": None,
    }


def eval_facts(eval_dir: Path, model_dir: Path) -> dict[str, Any] | None:
    """The figures of the eval run in `eval_dir` when it evaluated `model_dir`; None otherwise
    (no eval there, answers only without a judge, or another model's eval)."""
    try:
        summary = json.loads((Path(eval_dir) / EVAL_SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    evaluated = str((summary.get("config") or {}).get("model") or "")
    if not evaluated or Path(evaluated).expanduser().resolve() != Path(model_dir).resolve():
        if evaluated:
            logger.info("%s evaluated %s, not %s: the model card leaves it out", eval_dir, evaluated, model_dir)
        return None
    results = summary.get("results")
    if not isinstance(results, dict) or results.get("win_rate") is None:
        return None
    facts = {
        "eval_dir": str(eval_dir),
        "contestant": summary.get("contestant"),
        "reference": summary.get("reference"),
        "judge_model": summary.get("judge_model"),
        "eval_set": summary.get("eval_set"),
        "tasks": summary.get("tasks"),
        "both_orders": summary.get("both_orders"),
        **{key: results.get(key) for key in ("win_rate", "standard_error", "ci95_bootstrap", "wins", "ties",
                                              "losses", "unparseable", "n")},
        "length_controlled": None,
    }
    controlled = summary.get("length_controlled")
    if isinstance(controlled, dict) and controlled.get("win_rate") is not None:
        facts["length_controlled"] = {key: controlled.get(key)
                                      for key in ("win_rate", "length_coefficient", "ci95", "extreme_change")}
    return facts


# --- rendering ------------------------------------------------------------------------------

def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _method(training: dict[str, Any], role: str) -> str:
    lora = training.get("lora")
    if isinstance(lora, dict):
        what = (f"LoRA (r {lora.get('r')}, alpha {lora.get('alpha')}, dropout {lora.get('dropout')}, on "
                f"{', '.join(lora.get('target_modules') or [])})")
        if lora.get("load_in_4bit"):
            what = "Q" + what + " over a 4-bit base"
        return what + (", merged into the base" if role == "model" else "")
    if training.get("deepspeed"):
        return "full fine-tuning with DeepSpeed"
    if training.get("fsdp"):
        return f"full fine-tuning, FSDP over {training.get('world_size')} processes"
    processes = training.get("world_size") or 1
    return "full fine-tuning on one process" if processes == 1 else f"full fine-tuning over {processes} processes (DDP)"


def _examples(training: dict[str, Any]) -> str:
    """The examples trained on, and when truncation cost some, how many of those read."""
    text = _num(training.get("examples"))
    read, dropped, truncated = (training.get(key) for key in ("examples_read", "dropped_examples",
                                                               "truncated_examples"))
    notes = []
    if dropped:
        notes.append(f"{_num(dropped)} dropped: no response token left after truncation")
    if truncated:
        notes.append(f"{_num(truncated)} truncated at the maximum length")
    if notes and read is not None:
        text += f" of {_num(read)} read ({'; '.join(notes)})"
    return text


def _hardware(hardware: dict[str, Any]) -> str:
    if not hardware:
        return "n/a"
    device = hardware.get("gpu") or hardware.get("device") or "?"
    nodes = hardware.get("nodes") or 1
    return f"{hardware.get('processes', 1)} x {device}" + (f" on {nodes} machines" if nodes > 1 else "")


def header(facts: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML header (Hugging Face model-card metadata)."""
    role = facts.get("role", "model")
    dataset = facts.get("dataset") or {}
    tags = ["alpaca", "instruction-tuning", "text-generation"]
    if (facts.get("training") or {}).get("lora"):
        tags.append("lora")
    if role == "diff":
        tags.append("weight-diff")
    out: dict[str, Any] = {
        "license": facts.get("base_license") or "unknown",
        "base_model": facts.get("base_model"),
        "library_name": "peft" if role == "adapter" else "transformers",
        "pipeline_tag": "text-generation",
    }
    if dataset.get("language"):
        out["language"] = dataset["language"]
    out["tags"] = tags
    ev = facts.get("eval")
    if ev:
        metrics = [{"type": "win_rate", "value": ev["win_rate"],
                    "name": f"win rate against {ev.get('reference')} (judge {ev.get('judge_model')})"}]
        if ev.get("standard_error") is not None:
            metrics.append({"type": "win_rate_standard_error", "value": ev["standard_error"],
                            "name": "standard error of the win rate"})
        if ev.get("length_controlled"):
            metrics.append({"type": "length_controlled_win_rate", "value": ev["length_controlled"]["win_rate"],
                            "name": "length-controlled win rate"})
        out["model-index"] = [{"name": facts.get("name"), "results": [{
            "task": {"type": "text-generation", "name": "pairwise comparison by an LLM judge"},
            "dataset": {"name": Path(str(ev.get("eval_set") or "eval set")).name, "type": str(ev.get("eval_set"))},
            "metrics": metrics}]}]
    return out


def _eval_section(ev: dict[str, Any]) -> list[str]:
    low, high = ev.get("ci95_bootstrap") or (None, None)
    lines = ["## Evaluation", "",
             f"Answers to {_num(ev.get('tasks'))} tasks of `{ev.get('eval_set')}`, each compared with "
             f"{ev.get('reference')}'s answer by the judge `{ev.get('judge_model')}`"
             + (" (both orders shown)" if ev.get("both_orders") else "") + "; a tie counts as half a win.", "",
             "| measure | value |", "|---|---|"]
    controlled = ev.get("length_controlled")
    if controlled:
        lines.append(f"| length-controlled win rate | {_num(controlled['win_rate'])} |")
        interval = controlled.get("ci95")
        if isinstance(interval, list) and len(interval) == 2:
            lines.append(f"| length-controlled 95% interval | {_num(interval[0])} - {_num(interval[1])} |")
        lines.append(f"| length coefficient | {_num(controlled.get('length_coefficient'))} |")
    lines.append(f"| win rate | {_num(ev.get('win_rate'))} |")
    lines.append(f"| standard error | {_num(ev.get('standard_error'))} |")
    if low is not None:
        lines.append(f"| 95% bootstrap interval | {_num(low)} - {_num(high)} |")
    lines.append(f"| wins / ties / losses | {ev.get('wins')} / {ev.get('ties')} / {ev.get('losses')} |")
    if ev.get("unparseable"):
        lines.append(f"| tasks without a verdict | {ev.get('unparseable')} |")
    lines += ["", "An LLM judge prefers longer answers and can favour its own style: read the rate as a "
              "comparison under this judge, not as an absolute quality."
              + ("" if controlled else " No length-controlled rate was computed for this run.")
              + (" The length-controlled rate moved far from the raw one (AlpacaEval's warning rule): the length "
                 "model may not describe this judge, or there are too few tasks for the fit."
                 if controlled and controlled.get("extreme_change") else ""), ""]
    return lines


def body(facts: dict[str, Any]) -> str:
    """The card's Markdown."""
    name, role = facts.get("name", "model"), facts.get("role", "model")
    base = facts.get("base_model")
    training = facts.get("training") or {}
    dataset = facts.get("dataset") or {}
    examples = dataset.get("examples") if dataset.get("examples") is not None else training.get("examples")
    # What the model learnt from: the examples left after truncation, which can be fewer than the file holds.
    trained_on = training.get("examples") if training.get("examples") is not None else examples
    what = {"model": "a model", "adapter": "a LoRA adapter", "diff": "a weight diff"}[role]
    lines = [f"# {name}", "",
             f"{what[0].upper() + what[1:]}: `{base}` fine-tuned to follow instructions on "
             f"{_num(trained_on)} example{'' if trained_on == 1 else 's'} in the Alpaca format "
             f"({_method(training, role)}).", ""]
    if role == "diff":
        raw = facts.get("diff_base") or base
        lines += ["This folder holds the difference between the fine-tuned weights and the base, not usable "
                  "weights. Rebuild the model (every tensor is checked against the manifest):", "", "```bash",
                  f"python -m recover recover --path_raw {raw} --path_diff <this folder> --path_tuned <output folder>",
                  "```", ""]
    lines += ["## Base model", "", f"- `{base}`, license: {facts.get('base_license') or 'unknown (see the base model)'}",
              "- The fine-tuned weights inherit the base model's license and limitations.", "",
              "## Training data", "", f"- `{dataset.get('path')}`: {_num(examples)} examples"]
    if dataset.get("generator_model"):
        cost = dataset.get("generation_cost_usd")
        lines.append(f"- generated with `{dataset['generator_model']}` (self-instruct)"
                     + (f", estimated cost ${cost:.4f}" if isinstance(cost, (int, float)) else ""))
    if dataset.get("card"):
        lines.append(f"- dataset card: `{dataset['card']}` (license: {dataset.get('license', 'n/a')})")
    lines += ["", "## Training", "", "| setting | value |", "|---|---|",
              f"| method | {_method(training, role)} |",
              f"| hardware | {_hardware(facts.get('hardware') or {})} |",
              f"| precision | {training.get('precision', 'n/a')} |",
              f"| optimizer steps | {_num(training.get('steps'))} |",
              f"| effective batch size | {_num(training.get('effective_batch_size'))} |",
              f"| examples | {_examples(training)} |",
              f"| supervised tokens | {_num(training.get('supervised_tokens'))} |",
              f"| training loss (mean) | {_num(training.get('train_loss'))} |",
              f"| final loss | {_num(training.get('final_loss'))} |",
              f"| training time (s) | {_num(training.get('elapsed_s'), 1)} |"]
    if training.get("trainable_params") is not None:
        lines.append(f"| trainable parameters | {_num(training['trainable_params'])} of "
                     f"{_num(training.get('total_params'))} |")
    lines.append("")
    if facts.get("loss_curve"):
        lines += [f"![training loss]({facts['loss_curve']})", ""]
    recipe = facts.get("recipe")
    if recipe:
        lines += ["## Recipe", "", f"Made by the recipe `{RECIPE_COPY}` (beside these files), which reruns "
                  "every step:", "", "```bash", f"make all RECIPE={RECIPE_COPY}", "```", ""]
    if facts.get("eval"):
        lines += _eval_section(facts["eval"])
    lines += ["## How to use", "", "The model was trained on the Alpaca prompt, which its tokenizer's chat template "
              "renders for one user message:", "", "```text", PROMPT_NO_INPUT.format(instruction="<instruction>"),
              "```", "", "```bash",
              "make chat MODEL=<this folder>                       # answers streamed",
              "make export MODEL=<this folder> FORMAT=ollama       # GGUF for llama.cpp + an Ollama Modelfile",
              "```", "",
              "## Intended use", "",
              "Research and prototyping of instruction following in the domain and language of the training data.",
              "It is not meant for decisions about people, medical, legal or financial advice, or unsupervised use.", "",
              "## Limitations", "",
              "- The training data was written by a language model from a few seed tasks: it carries that model's "
              "errors and biases, and its coverage is as narrow as the seeds.",
              "- The model can state false things fluently, and received no safety or preference tuning beyond "
              "its base.",
              "- It was trained on single-turn prompts; longer conversations are outside its training."]
    return "\n".join(lines) + "\n"


def write_model_card(folder: Path, facts: dict[str, Any]) -> Path:
    """Write `model_card.json` and README.md into `folder`; return the card's path."""
    folder = Path(folder)
    atomic_write_json(folder / FACTS_NAME, facts, ensure_ascii=False)
    return write_card(folder / CARD_NAME, header(facts), body(facts))


def add_eval(folder: Path, eval_dir: Path) -> bool:
    """Put the eval run in `eval_dir` into the card of `folder` when it evaluated that folder."""
    facts = read_facts(folder)
    found = eval_facts(eval_dir, folder) if facts is not None else None
    if found is None:
        return False
    facts["eval"] = found
    write_model_card(folder, facts)
    return True


def add_recipe(folder: Path, recipe_path: Path) -> bool:
    """Copy the recipe beside the weights and name it in the card."""
    facts = read_facts(folder)
    if facts is None:
        return False
    shutil.copyfile(recipe_path, Path(folder) / RECIPE_COPY)
    facts["recipe"] = {"file": RECIPE_COPY, "source": str(recipe_path)}
    write_model_card(folder, facts)
    return True


def carry_card(source: Path, target: Path, role: str, *, base: str | None = None, eval_dir: Path | None = None) -> Path:
    """The card of the weights in `source`, rendered for `target` in `role` ("diff" for make_diff,
    "model" for recover), with its loss curve and recipe. A source without facts (a model not
    trained here) gets a card from what its config says; `base` names the diff's base."""
    source, target = Path(source), Path(target)
    facts = read_facts(source)
    if facts is None:
        facts = {"name": source.resolve().name, "role": role, "base_model": base, "base_license": None,
                 "dataset": {}, "training": {}, "hardware": {}, "loss_curve": None, "recipe": None, "eval": None}
    if eval_dir is not None:
        found = eval_facts(eval_dir, source)
        if found is not None:
            facts["eval"] = found
    facts["role"] = role  # recovered weights are full weights, from a full or an adapter diff
    if role == "diff":
        facts["diff_base"] = base or facts.get("base_model")
    else:
        facts.pop("diff_base", None)
    for extra in (facts.get("loss_curve"), (facts.get("recipe") or {}).get("file")):
        if extra and (source / extra).is_file():
            shutil.copyfile(source / extra, target / extra)
    return write_model_card(target, facts)
