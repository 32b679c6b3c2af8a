"""A Hugging Face tokenizer as GGUF tokenizer metadata, under llama.cpp's key names.

A GGUF file has no tokenizer.json: llama.cpp (and transformers' GGUF reader) rebuild the
tokenizer from a few facts stored as metadata: which algorithm (`tokenizer.ggml.model`), which
pre-tokenizer split (`tokenizer.ggml.pre`), every token string with its type, the BPE merges,
the special token ids and whether BOS/EOS are added. Two kinds of tokenizer can be described:

* byte-level BPE ("gpt2"): GPT-2, Llama 3, Qwen2 and the tiny tokenizers of our tests. Tokens are
  stored as the tokenizer spells them (bytes mapped to printable characters, "Ġ" for a space).
  The pre-tokenizer must be one whose split llama.cpp knows by name (`BYTE_LEVEL_SPLITS`);
  anything else would tokenize differently after the export, so it is refused.
* SentencePiece-style BPE ("llama"): LLaMA 1/2 and Mistral v0.1: "▁" for a space, byte-fallback
  tokens `<0x00>`..`<0xFF>`, scores (here: minus the id, the merge order a BPE vocabulary is
  written in).

What the tokenizer adds around a text (BOS, EOS) is measured by tokenizing a probe, not read
from config files, because the post-processor, the tokenizer config and special_tokens_map can
disagree and the tokenizer's own output is what training saw.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from gguf import GGUFWriter, TokenType

from export.errors import ExportError

logger = logging.getLogger(__name__)

# tokenizer.ggml.pre name -> the regex a byte-level tokenizer.json splits with before
# ByteLevel(use_regex=False). The names are llama.cpp's; the regexes are those of the models'
# published tokenizer.json files.
BYTE_LEVEL_SPLITS = {
    "llama-bpe": (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "qwen2": (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
              r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
}
# ByteLevel(use_regex=True) splits with GPT-2's own regex; llama.cpp calls that "gpt-2".
GPT2_PRE = "gpt-2"
SUPPORTED_PRE = (GPT2_PRE, *BYTE_LEVEL_SPLITS)

_BYTE_TOKEN = re.compile(r"^<0x[0-9A-F]{2}>$")
_PROBE = "Probe text"


@dataclass(frozen=True)
class GgufVocab:
    """Everything a GGUF file says about its tokenizer."""

    model: Literal["gpt2", "llama"]
    pre: str | None  # tokenizer.ggml.pre (byte-level only)
    tokens: list[str]
    token_types: list[int]
    scores: list[float] | None
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool | None  # SentencePiece-style only
    chat_template: str | None

    def write(self, writer: GGUFWriter) -> None:
        """Add the tokenizer keys to `writer` (before its header is written)."""
        writer.add_tokenizer_model(self.model)
        if self.pre is not None:
            writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.token_types)
        if self.scores is not None:
            writer.add_token_scores(self.scores)
        if self.merges:
            writer.add_token_merges(self.merges)
        for token_id, add in ((self.bos_id, writer.add_bos_token_id), (self.eos_id, writer.add_eos_token_id),
                              (self.unk_id, writer.add_unk_token_id), (self.pad_id, writer.add_pad_token_id)):
            if token_id is not None:
                add(token_id)
        writer.add_add_bos_token(self.add_bos)
        writer.add_add_eos_token(self.add_eos)
        if self.add_space_prefix is not None:
            writer.add_add_space_prefix(self.add_space_prefix)
        if self.chat_template:
            writer.add_chat_template(self.chat_template)


def _backend_json(tokenizer: Any, what: str) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(f"{what}: the tokenizer is not a fast (tokenizers) tokenizer; save it with "
                          "transformers >= 4.56 so that tokenizer.json is written, then export again")
    return json.loads(backend.to_str())


def _byte_level_pre(pre_tokenizer: dict | None) -> str | None:
    """llama.cpp's name for a byte-level pre-tokenizer, or None when it has none."""
    if not pre_tokenizer:
        return None
    kind = pre_tokenizer.get("type")
    if kind == "ByteLevel":
        if pre_tokenizer.get("use_regex", True) and not pre_tokenizer.get("add_prefix_space", False):
            return GPT2_PRE
        return None
    if kind == "Sequence":
        steps = pre_tokenizer.get("pretokenizers") or []
        if len(steps) != 2 or steps[0].get("type") != "Split" or steps[1].get("type") != "ByteLevel":
            return None
        split, byte_level = steps
        if byte_level.get("use_regex", True) or byte_level.get("add_prefix_space", False):
            return None
        if split.get("behavior") != "Isolated" or split.get("invert"):
            return None
        regex = (split.get("pattern") or {}).get("Regex")
        return next((name for name, known in BYTE_LEVEL_SPLITS.items() if known == regex), None)
    return None


def _spm_space_prefix(data: dict) -> bool | None:
    """Whether a SentencePiece-style tokenizer prefixes "▁" to a text (None: not that kind)."""
    pre, norm = data.get("pre_tokenizer"), data.get("normalizer")
    if pre and pre.get("type") == "Metaspace" and pre.get("replacement") == "▁" and not norm:
        scheme = pre.get("prepend_scheme", "always" if pre.get("add_prefix_space", True) else "never")
        return scheme in ("first", "always")
    # The layout of LLaMA tokenizer.json files written before tokenizers 0.14: the prefix and the
    # space replacement are done by the normalizer, and there is no pre-tokenizer.
    if not pre and norm and norm.get("type") == "Sequence":
        steps = [(s.get("type"), s.get("prepend"), (s.get("pattern") or {}).get("String"), s.get("content"))
                 for s in norm.get("normalizers", [])]
        if steps == [("Prepend", "▁", None, None), ("Replace", None, " ", "▁")]:
            return True
        if steps == [("Replace", None, " ", "▁")]:
            return False
    return None


def _merges(model: dict) -> list[str]:
    out = []
    for merge in model.get("merges") or []:
        pair = merge.split(" ") if isinstance(merge, str) else list(merge)
        if len(pair) != 2 or any(" " in part for part in pair):
            # The GGUF spelling of a merge is "left right": a part with a space cannot be written.
            raise ExportError(f"the tokenizer has a merge {merge!r} whose parts contain a space, which GGUF's "
                              "'left right' merge strings cannot hold")
        out.append(f"{pair[0]} {pair[1]}")
    return out


def _special_id(tokenizer: Any, attr: str) -> int | None:
    token = getattr(tokenizer, attr, None)
    if not token:  # unset, or "" as LLaMA-1 conversions ship it
        return None
    token_id = tokenizer.convert_tokens_to_ids(str(token))
    return token_id if isinstance(token_id, int) else None


def _added_around(tokenizer: Any, bos_id: int | None, eos_id: int | None, what: str) -> tuple[bool, bool]:
    """(adds BOS, adds EOS), measured on a probe text."""
    plain = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    full = tokenizer(_PROBE)["input_ids"]
    add_bos = bos_id is not None and len(full) > len(plain) and full[0] == bos_id
    add_eos = eos_id is not None and len(full) > len(plain) and full[-1] == eos_id
    core = full[int(add_bos): len(full) - int(add_eos)]
    if core != plain:
        raise ExportError(f"{what}: the tokenizer adds tokens other than BOS/EOS around a text "
                          f"({full} for {plain}), which a GGUF file cannot describe")
    return add_bos, add_eos


def vocab_from_tokenizer(tokenizer: Any, vocab_rows: int, chat_template: str | None, what: str = "tokenizer") -> GgufVocab:
    """The GGUF description of `tokenizer`, padded to the model's `vocab_rows` embedding rows.

    Ids the tokenizer does not use (an embedding padded to a multiple of 64, say) get placeholder
    tokens `[PAD<id>]` of type UNUSED, so that token and row counts agree as llama.cpp requires."""
    data = _backend_json(tokenizer, what)
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise ExportError(f"{what}: a {model.get('type')} tokenizer cannot be exported to GGUF here; supported: "
                          "byte-level BPE (GPT-2, Llama 3, Qwen2) and SentencePiece-style BPE (LLaMA 1/2, Mistral)")
    vocab: dict[str, int] = tokenizer.get_vocab()
    top = max(vocab.values()) + 1
    if top > vocab_rows:
        raise ExportError(f"{what}: the tokenizer has ids up to {top - 1}, but the model's embedding has only "
                          f"{vocab_rows} rows; the checkpoint was saved before its embeddings were resized")

    if model.get("byte_fallback"):
        space_prefix = _spm_space_prefix(data)
        if space_prefix is None:
            raise ExportError(f"{what}: a byte-fallback BPE tokenizer without the SentencePiece pre-tokenizer "
                              "(Metaspace '▁') cannot be described in GGUF")
        kind, pre = "llama", None
    else:
        pre = _byte_level_pre(data.get("pre_tokenizer"))
        if pre is None:
            raise ExportError(f"{what}: its pre-tokenizer {json.dumps(data.get('pre_tokenizer'))} is not one "
                              f"llama.cpp knows by name (supported: {', '.join(SUPPORTED_PRE)})")
        normalizer = data.get("normalizer")
        if normalizer and normalizer.get("type") != "NFC":
            raise ExportError(f"{what}: its normalizer {normalizer.get('type')} has no GGUF equivalent")
        if normalizer:
            # Qwen2 ships NFC; neither llama.cpp nor transformers' GGUF reader applies it, so text
            # that is not already NFC (decomposed accents) tokenizes differently after the export.
            logger.warning("%s: the tokenizer's NFC normalizer is not kept in GGUF; text in decomposed "
                           "Unicode form will tokenize differently", what)
        kind, space_prefix = "gpt2", None

    tokens: list[str | None] = [None] * vocab_rows
    for token, index in vocab.items():
        tokens[index] = token
    added = {index: tok for index, tok in tokenizer.added_tokens_decoder.items()}
    unk_id = _special_id(tokenizer, "unk_token")
    types = []
    for index, token in enumerate(tokens):
        if token is None:
            tokens[index] = f"[PAD{index}]"
            types.append(TokenType.UNUSED)
        elif index in added:
            types.append(TokenType.CONTROL if added[index].special else TokenType.USER_DEFINED)
        elif kind == "llama" and index == unk_id:
            types.append(TokenType.UNKNOWN)
        elif kind == "llama" and _BYTE_TOKEN.match(token):
            types.append(TokenType.BYTE)
        else:
            types.append(TokenType.NORMAL)
    if kind == "llama" and unk_id is not None and unk_id in added:
        types[unk_id] = TokenType.UNKNOWN

    bos_id, eos_id = _special_id(tokenizer, "bos_token"), _special_id(tokenizer, "eos_token")
    add_bos, add_eos = _added_around(tokenizer, bos_id, eos_id, what)
    return GgufVocab(
        model=kind, pre=pre, tokens=[str(t) for t in tokens], token_types=[int(t) for t in types],
        scores=[-float(i) for i in range(vocab_rows)] if kind == "llama" else None,
        merges=_merges(model), bos_id=bos_id, eos_id=eos_id, unk_id=unk_id,
        pad_id=_special_id(tokenizer, "pad_token"), add_bos=add_bos, add_eos=add_eos,
        add_space_prefix=space_prefix, chat_template=chat_template,
    )
