"""The evaluation set and the reference answers: loading, checking, and the named downloads.

An evaluation set is JSONL (one task a line) or a JSON list of tasks, each with `instruction`
and optionally `input`, `id` and a category (`motivation_app`, `category` or AlpacaEval's
`dataset`); the self-instruct schema (`instances: [{input, output}]`) is read too, one item
per instance. A reference file is the same kind of file with an answer per instruction:
`output` or `response` (text-davinci-003's predictions use `response`), keyed by
`instruction` and `input`. Whitespace is normalised in keys only: the reference's
instructions carry stray newlines that the set's do not.

Named sets (`--eval_set NAME`), each downloaded once from its repository at a pinned
commit, checked against a pinned sha256 and cached:

- `self_instruct` (the default): the self-instruct user-oriented set (252 tasks) and
  text-davinci-003's answers to it, the original Alpaca comparison;
- `alpaca_eval`: AlpacaEval's 805 prompts with text-davinci-003's answers as the reference
  (AlpacaEval 1); the set and the reference are one file, the reference's own answers;
- `alpaca_eval_2`: the same 805 prompts against GPT-4 Turbo's answers (gpt4_1106_preview,
  AlpacaEval 2's baseline).

AlpacaEval's files hold no `input` (it is folded into the instruction) and name the
category in `dataset` (selfinstruct, oasst, koala, helpful_base, vicuna). Its data is
licensed CC BY-NC 4.0: non-commercial use.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.exit_codes import InputError
from core.files import atomic_write_text
from core.records import RecordError, parse_json, parse_jsonl, read_text

logger = logging.getLogger(__name__)

_SELF_INSTRUCT = "https://raw.githubusercontent.com/yizhongw/self-instruct/0b26ccaa415992100fa32df62d41b994cf928e23/"


@dataclass(frozen=True)
class Download:
    """A public file fetched once: where from, its pinned digest, and its name in the cache."""

    url: str
    sha256: str
    filename: str


DEFAULT_EVAL_SET = Download(
    _SELF_INSTRUCT + "human_eval/user_oriented_instructions.jsonl",
    "81d60a117db495cecedecd9193504fd07c5b5a42f6699ef6b0f9da10fc22f42e",
    "user_oriented_instructions.jsonl",
)
DEFAULT_REFERENCE = Download(
    _SELF_INSTRUCT + "human_eval/predictions/text-davinci-003_predictions.jsonl",
    "9fbf9229c917f2c832399e4d474f0ed1a4f367fae61e5eee814f3db687e0d584",
    "text-davinci-003_predictions.jsonl",
)
DEFAULT_REFERENCE_NAME = "text-davinci-003"

_ALPACA_EVAL = "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/cd543a149df89434d8a54582c0151c0b945c3d20/"
ALPACA_EVAL_DAVINCI = Download(
    _ALPACA_EVAL + "results/text_davinci_003/model_outputs.json",
    "af0bc112f08c88bf589bbfe6fc1036806d0a0f6fec9c4d5a4db860f5afe73b4b",
    "alpaca_eval_text_davinci_003.json",  # both upstream files are called model_outputs.json
)
ALPACA_EVAL_GPT4_TURBO = Download(
    _ALPACA_EVAL + "results/gpt4_1106_preview/model_outputs.json",
    "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4",
    "alpaca_eval_gpt4_1106_preview.json",
)


@dataclass(frozen=True)
class NamedSet:
    """A set `--eval_set NAME` stands for: its tasks, its reference answers and the reference's name."""

    tasks: Download
    reference: Download
    reference_name: str


NAMED_SETS = {
    "self_instruct": NamedSet(DEFAULT_EVAL_SET, DEFAULT_REFERENCE, DEFAULT_REFERENCE_NAME),
    "alpaca_eval": NamedSet(ALPACA_EVAL_DAVINCI, ALPACA_EVAL_DAVINCI, "text-davinci-003"),
    "alpaca_eval_2": NamedSet(ALPACA_EVAL_GPT4_TURBO, ALPACA_EVAL_GPT4_TURBO, "gpt4_1106_preview"),
}
DEFAULT_SET_NAME = "self_instruct"
DOWNLOAD_TIMEOUT_S = 60.0
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024


class EvalInputError(InputError):
    """A bad evaluation set, reference file or download; the message names the file and line."""


@dataclass(frozen=True)
class EvalItem:
    """One task of the evaluation set; `index` is its position (the journals' key)."""

    index: int
    id: str
    instruction: str
    input: str
    category: str


def normalize(text: str) -> str:
    """Whitespace collapsed: the form instructions and inputs are matched in."""
    return " ".join(text.split())


def item_key(instruction: str, input: str) -> tuple[str, str]:
    """The key that pairs a task with its reference answer."""
    return normalize(instruction), normalize(input)


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/alpaca-pipeline (~/.cache/alpaca-pipeline)."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "alpaca-pipeline"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cached_download(download: Download, cache_dir: Path) -> Path:
    """The cached copy of `download`, fetched and checked first if it is not there yet.

    A copy whose digest no longer matches is fetched again; a fetched file whose digest does
    not match is refused and nothing is cached.
    """
    target = cache_dir / download.filename
    if target.is_file():
        if sha256_of(target.read_bytes()) == download.sha256:
            return target
        logger.warning("%s does not match its pinned sha256; downloading it again", target)
    logger.info("downloading %s (once; cached in %s)", download.url, cache_dir)
    try:
        with urllib.request.urlopen(download.url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read(MAX_DOWNLOAD_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise EvalInputError(
            f"cannot download {download.url} ({reason}); put the file at {target} by hand, "
            f"or pass a local file (--eval_set / --reference)"
        ) from None
    digest = sha256_of(data)
    if len(data) > MAX_DOWNLOAD_BYTES or digest != download.sha256:
        raise EvalInputError(
            f"{download.url}: the downloaded file's sha256 is {digest}, expected {download.sha256}; "
            f"not used (the source changed or the download was altered)"
        )
    atomic_write_text(target, data)
    return target


def _read_records(path: Path, what: str, flag: str) -> list[tuple[str, int, dict]]:
    """(place, number, object) for each task or answer: `path:LINE` and the line number in
    JSONL, `path[INDEX]` and INDEX + 1 in a JSON list (AlpacaEval's files); one-line errors
    naming the file and the line or item."""
    if path.is_dir():
        raise EvalInputError(f"{what} {path}: is a directory, expected a JSONL or JSON file")
    text = read_text(path, hint=f"check {flag}")
    if text.lstrip().startswith("["):
        data = parse_json(text, path)
        records = [(f"{path}[{index}]", index + 1, value) for index, value in enumerate(data)]
    else:
        records = [(f"{path}:{number}", number, value) for number, value in parse_jsonl(text, path)]
    for where, _, value in records:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(value).__name__}")
    if not records:
        raise EvalInputError(f"{what} {path}: empty (expected one JSON object a line, or a JSON list of them)")
    return records


def string_field(record: dict, key: str, where: str, what: str = "") -> str:
    """A record's text field ("" when absent or null); anything else is one line naming `where`."""
    value = record.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EvalInputError(f"{what} {where}: {key!r} must be a string, got {type(value).__name__}".lstrip())
    return value


def load_eval_set(path: Path, what: str = "eval set", flag: str = "--eval_set") -> list[EvalItem]:
    """The tasks of an evaluation set, in file order (`what` and `flag` name the file in errors)."""
    items: list[EvalItem] = []
    for where, number, record in _read_records(path, what, flag):
        instruction = string_field(record, "instruction", where, what)
        if not instruction.strip():
            raise EvalInputError(f"{what} {where}: no 'instruction' (every task needs one)")
        category = next((c for c in (string_field(record, key, where, what)
                                     for key in ("motivation_app", "category", "dataset")) if c), "")
        base_id = str(record.get("id", f"line{number}"))
        instances = record.get("instances")
        if "input" in record or instances is None:
            inputs = [string_field(record, "input", where, what)]
        elif isinstance(instances, list) and instances and all(isinstance(i, dict) for i in instances):
            inputs = [string_field(i, "input", where, what) for i in instances]
        else:
            raise EvalInputError(f"{what} {where}: 'instances' must be a non-empty list of objects")
        for k, inp in enumerate(inputs):
            item_id = base_id if len(inputs) == 1 else f"{base_id}#{k}"
            items.append(EvalItem(len(items), item_id, instruction.strip(), inp.strip(), category.strip()))
    return items


def load_reference(path: Path, what: str = "reference", flag: str = "--reference") -> dict[tuple[str, str], str]:
    """Reference answers keyed by (instruction, input), whitespace-normalised (`what` and
    `flag` name the file in errors)."""
    answers: dict[tuple[str, str], str] = {}
    for where, _, record in _read_records(path, what, flag):
        instruction = string_field(record, "instruction", where, what)
        if not instruction.strip():
            raise EvalInputError(f"{what} {where}: no 'instruction' to key the answer by")
        key_name = "output" if "output" in record else "response"
        if key_name not in record:
            raise EvalInputError(f"{what} {where}: no 'output' (or 'response') answer")
        answer = string_field(record, key_name, where, what)
        answers[item_key(instruction, string_field(record, "input", where, what))] = answer.strip()
    return answers


def pair_reference(items: list[EvalItem], answers: dict[tuple[str, str], str]) -> dict[int, str]:
    """Each task's reference answer: by instruction and input, else by the instruction alone
    when the reference has exactly one answer for it."""
    by_instruction: dict[str, list[str]] = {}
    for (instruction, _), answer in answers.items():
        by_instruction.setdefault(instruction, []).append(answer)
    paired = {}
    for item in items:
        key = item_key(item.instruction, item.input)
        if key in answers:
            paired[item.index] = answers[key]
        elif len(by_instruction.get(key[0], [])) == 1:
            paired[item.index] = by_instruction[key[0]][0]
    return paired


def generator_of(path: Path, what: str = "reference", flag: str = "--reference") -> str | None:
    """The model that wrote a file's answers, when its records name one and the same
    (`generator`, as in eval_answers.jsonl and AlpacaEval's files)."""
    names = {record.get("generator") for _, _, record in _read_records(path, what, flag)}
    name = names.pop() if len(names) == 1 else None
    return name.strip() or None if isinstance(name, str) else None
