"""A deterministic model on the loopback OpenAI server that plays evolution's rewriter, judge and
answerer and select's complexity scorer, and fails on cue.

    with OpenAIServer() as server:
        model = EvolveModel()
        model.install(server)            # answers /v1/chat/completions
        ...
        model.calls                      # Counter: role -> calls answered (rewrite, judge, answer, complexity)

    python -m tests.fakes.evolve_model --port_file /tmp/port   # the same, from a shell

It recognises each prompt by matching it against the templates of every prompt file in
generate/evolve/prompts/ (so it follows the prompts as they are edited, in every language),
and answers as a function of the prompt alone: a retried or resumed call gets the same answer.

Rewrites are made-up sentences (pseudo-words, or Chinese characters for the Chinese prompts),
different for every prompt, so they pass the filters and the dedup. A cue word in the text
being rewritten (it is carried into the rewrite) makes the candidate fail in one known way:

| cue          | step    | what the model does                                   | elimination reason        |
|--------------|---------|-------------------------------------------------------|---------------------------|
| `CUTOFF`     | rewrite | the rewrite stops at its token limit                  | `rewrite_truncated`       |
| `COPYCAT`    | rewrite | the rewrite opens with "Rewritten task:"              | `copies_prompt`           |
| `PICTURE`    | rewrite | the rewrite asks to draw a diagram                    | `blacklisted` (filters)   |
| `SAMEY`      | judge   | `[[no]]`                                              | `no_information_gain`     |
| `MUMBLE`     | judge   | an answer without a verdict                           | `no_information_gain`     |
| `LONGWINDED` | answer  | the answer stops at its token limit                   | `answer_truncated`        |
| `REFUSE`     | answer  | "I'm sorry, but I cannot help with that."             | `answer_refusal`          |
| `APOLOGY`    | answer  | "Sorry, that is not something I know well."           | `answer_refusal`          |
| `TERSE`      | answer  | "It is."                                              | `answer_stop_words_only`  |
| `NOOUT`      | answer  | "<nooutput>"                                          | `no_output_marker` (detectors) |
| `TWIN`       | rewrite | the same fixed sentence for every such example        | `similar` (dedup), all but the first |

The complexity score is `complexity[instruction]` when given, else 1 + (words mod 10).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from generate.evolve.prompts import PLACEHOLDERS, available_languages, load
from tests.fakes.openai_server import (
    OpenAIServer,
    RouteRequest,
    RouteResponse,
    chat_reply,
    serve_until_signalled,
)

CUES = ("CUTOFF", "COPYCAT", "PICTURE", "SAMEY", "MUMBLE", "LONGWINDED", "REFUSE", "APOLOGY", "TERSE", "NOOUT", "TWIN")
TWIN_SENTENCE = "Explain the twin paradox of special relativity with one worked example and a short summary."
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ti", "so", "va", "de", "pu")
_HAN = "山水火木金土日月风云花草鸟鱼书画茶酒春夏秋冬东西南北学问思行知言道理心身家国城市路桥河海天地人"
# Languages the generate stage checks by default: real words, so the language check (which judges
# rewrites and answers) reads them as the run's language; English keeps made-up words.
_WORDS = {
    "de": ("Erkläre", "die der das und ist nicht mit für auf dem eine sich auch wie wird bei "
                      "Wasser Schule Garten immer heute warum schnell"),
    "fr": ("Explique", "le la les et est pas avec pour sur une des aussi comme dans très "
                       "maison école jardin toujours pourquoi vite"),
    "es": ("Explica", "el la los y es no con para por una las también como muy cuando "
                      "casa escuela jardín siempre porque rápido"),
    "pt": ("Explique", "o a os e é não com para uma das também como muito quando "
                       "casa escola jardim sempre porque rápido você"),
    "it": ("Spiega", "il la gli e è non con per una delle anche come molto quando "
                     "casa scuola giardino sempre perché veloce"),
    "nl": ("Leg uit", "de het een en is niet met voor op ook als zijn wordt bij "
                      "water school tuin altijd waarom snel"),
    "ru": ("Объясни", "и в не на что это как для по из также очень когда "
                      "вода школа сад всегда почему быстро"),
    "pl": ("Wyjaśnij", "i w nie na że jest jak dla się także bardzo kiedy "
                       "woda szkoła ogród zawsze dlaczego szybko"),
}


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{([a-z_]+)\}", template)
    pattern = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.*?)" for i, part in enumerate(parts))
    return re.compile(pattern + r"\Z", re.DOTALL)


def _patterns() -> list[tuple[str, str, re.Pattern[str]]]:
    """(language, role, pattern) for every template of every prompt file."""
    return [(code, name, _template_pattern(load(code).templates[name]))
            for code in available_languages() for name in PLACEHOLDERS]


class EvolveModel:
    """Answers chat calls as the rewriter, judge, answerer or complexity scorer; counts them by role."""

    def __init__(self, latency_s: float = 0.0, complexity: Mapping[str, int] | None = None) -> None:
        self.latency_s = latency_s
        self.complexity = dict(complexity or {})
        self.calls: Counter[str] = Counter()
        self.languages: Counter[str] = Counter()  # calls per language of the prompt
        self.abandoned = 0  # answers ready after their client had gone (killed): not counted above
        # With `hold_after` set, calls beyond that many answered wait until `release()`: a test
        # kills its client at a known point, with calls in flight that were never answered.
        self.hold_after: int | None = None
        self._released = threading.Event()
        self._patterns = _patterns()
        self._lock = threading.Lock()

    def release(self) -> None:
        """Let the held calls go on (see `hold_after`)."""
        self._released.set()

    def install(self, server: OpenAIServer) -> None:
        server.add_route("POST", "/v1/chat/completions", self.handle)

    def recognise(self, prompt: str) -> tuple[str, str, dict[str, str]] | None:
        """(language, role, placeholder values) of a prompt, or None."""
        for code, name, pattern in self._patterns:
            match = pattern.match(prompt)
            if match:
                return code, name, match.groupdict()
        return None

    @staticmethod
    def _sentence(seed: str, words: int, language: str) -> str:
        rng = random.Random(hashlib.sha256(seed.encode("utf-8")).hexdigest())
        if language == "zh":
            return "请" + "".join(rng.choice(_HAN) for _ in range(words)) + "。"
        if language in _WORDS:
            lead, vocabulary = _WORDS[language]
            return lead + " " + " ".join(rng.choice(vocabulary.split()) for _ in range(words)) + "."
        made_up = [rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES) for _ in range(words)]
        return "Explain " + " ".join(made_up) + "."

    def reply(self, prompt: str, max_tokens: int) -> tuple[str, str, str]:
        """(role, text, finish_reason) for a prompt."""
        found = self.recognise(prompt)
        if found is None:
            return "unknown", "", "stop"
        language, role, values = found
        cues = {cue for cue in CUES if any(cue in value for value in values.values())}
        finish = "stop"
        if role == "judge":
            rewritten = values["rewritten_instruction"] + values["rewritten_input"]
            text = ("[[no]]" if "SAMEY" in rewritten else "I am not sure what to say." if "MUMBLE" in rewritten
                    else "[[yes]]")
        elif role == "answer":
            text = {"REFUSE": "I'm sorry, but I cannot help with that.",
                    "APOLOGY": "Sorry, that is not something I know well.",
                    "TERSE": "It is.", "NOOUT": "<nooutput>"}.get(next(iter(sorted(cues & {
                        "REFUSE", "APOLOGY", "TERSE", "NOOUT"})), ""), "")
            if not text:
                lead = "" if language in _WORDS else "Here is the answer, step by step. "
                text = lead + self._sentence(prompt, 24, language)
            if "LONGWINDED" in cues:
                finish = "length"
        elif role == "complexity":
            instruction = values["instruction"].strip()
            score = self.complexity.get(instruction, 1 + len(instruction.split()) % 10)
            text = f"[[{score}]]"
        else:  # a rewrite
            carried = " ".join(sorted(cues - {"TWIN"}))
            if "TWIN" in cues:
                text = TWIN_SENTENCE
            elif role == "complicate_input":
                text = self._sentence(prompt, 20, language) + (f" {carried}" if carried else "")
            else:
                text = self._sentence(prompt, 10, language) + (f" {carried}" if carried else "")
            if "COPYCAT" in cues:
                text = "Rewritten task: " + text
            if "PICTURE" in cues:
                text += " Then draw a diagram of it."
            if "CUTOFF" in cues:
                finish = "length"
        return role, text, finish

    def handle(self, request: RouteRequest) -> RouteResponse:
        body = request.json()
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        role, text, finish = self.reply(prompt, int(body.get("max_tokens") or body.get("max_completion_tokens") or 0))
        if role == "unknown":
            return RouteResponse(400, {"error": {"message": "not an evolve prompt", "type": "invalid_request_error",
                                                 "code": None, "param": None}})
        if self.latency_s:
            time.sleep(self.latency_s)
        with self._lock:
            held = self.hold_after is not None and sum(self.calls.values()) >= self.hold_after
        if held:
            self._released.wait(60)
        if request.client_gone():  # a killed client: answered to nobody, not counted (as the server does)
            with self._lock:
                self.abandoned += 1
            return RouteResponse(499, {"error": {"message": "client gone", "type": "server_error", "code": None,
                                                 "param": None}})
        with self._lock:
            self.calls[role if role in ("judge", "answer", "complexity") else "rewrite"] += 1
            self.languages[self.recognise(prompt)[0]] += 1
        prompt_tokens = len(prompt) // 4 + 1
        completion_tokens = len(text) // 4 + 1
        return chat_reply(body.get("model", ""), text, prompt_tokens, completion_tokens, finish)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Loopback OpenAI server playing evolve's and select's model.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port_file", type=Path, default=None)
    parser.add_argument("--latency_s", type=float, default=0.0)
    args = parser.parse_args(argv)
    server = OpenAIServer(port=args.port)
    EvolveModel(args.latency_s).install(server)
    serve_until_signalled(server, args.port_file, "(evolve rewriter, judge, answerer and complexity scorer)")


if __name__ == "__main__":
    main()
