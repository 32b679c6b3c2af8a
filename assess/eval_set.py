"""The evaluation set and the reference answers: loading, checking, and the default download.

An evaluation set is JSONL, one task a line, with `instruction` and optionally `input`,
`id` and `motivation_app` (the category); the self-instruct schema (`instances: [{input,
output}]`) is read too, one item per instance. A reference file is JSONL with an answer per
instruction: `output` or `response` (text-davinci-003's predictions use `response`), keyed
by `instruction` and `input`. Whitespace is normalised in keys only: the reference's
instructions carry stray newlines that the set's do not.

The defaults are the self-instruct user-oriented set (252 tasks) and text-davinci-003's
answers to it, the original Alpaca comparison. They are downloaded once from the
self-instruct repository, at a pinned commit, checked against a pinned sha256 and cached.
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
from core.records import read_jsonl_objects

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


def _read_jsonl(path: Path, what: str) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; one-line errors naming file and line."""
    if path.is_dir():
        raise EvalInputError(f"{what} {path}: is a directory, expected a JSONL file")
    flag = "--eval_set" if what == "eval set" else "--reference"
    records = list(read_jsonl_objects(path, hint=f"check {flag}"))
    if not records:
        raise EvalInputError(f"{what} {path}: empty (expected one JSON object a line)")
    return records


def _string_field(record: dict, key: str, path: Path, number: int, what: str) -> str:
    value = record.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EvalInputError(f"{what} {path}:{number}: {key!r} must be a string, got {type(value).__name__}")
    return value


def load_eval_set(path: Path) -> list[EvalItem]:
    """The tasks of an evaluation set, in file order."""
    what = "eval set"
    items: list[EvalItem] = []
    for number, record in _read_jsonl(path, what):
        instruction = _string_field(record, "instruction", path, number, what)
        if not instruction.strip():
            raise EvalInputError(f"{what} {path}:{number}: no 'instruction' (every task needs one)")
        category = _string_field(record, "motivation_app", path, number, what) or _string_field(
            record, "category", path, number, what)
        base_id = str(record.get("id", f"line{number}"))
        instances = record.get("instances")
        if "input" in record or instances is None:
            inputs = [_string_field(record, "input", path, number, what)]
        elif isinstance(instances, list) and instances and all(isinstance(i, dict) for i in instances):
            inputs = [_string_field(i, "input", path, number, what) for i in instances]
        else:
            raise EvalInputError(f"{what} {path}:{number}: 'instances' must be a non-empty list of objects")
        for k, inp in enumerate(inputs):
            item_id = base_id if len(inputs) == 1 else f"{base_id}#{k}"
            items.append(EvalItem(len(items), item_id, instruction.strip(), inp.strip(), category.strip()))
    return items


def load_reference(path: Path) -> dict[tuple[str, str], str]:
    """Reference answers keyed by (instruction, input), whitespace-normalised."""
    what = "reference"
    answers: dict[tuple[str, str], str] = {}
    for number, record in _read_jsonl(path, what):
        instruction = _string_field(record, "instruction", path, number, what)
        if not instruction.strip():
            raise EvalInputError(f"{what} {path}:{number}: no 'instruction' to key the answer by")
        key_name = "output" if "output" in record else "response"
        if key_name not in record:
            raise EvalInputError(f"{what} {path}:{number}: no 'output' (or 'response') answer")
        answer = _string_field(record, key_name, path, number, what)
        answers[item_key(instruction, _string_field(record, "input", path, number, what))] = answer.strip()
    return answers
