"""The pairwise judge: its prompts, who is shown first, and reading its verdict.

Reasoned mode (the default): the judge sees the instruction (and input) and two answers, A
shown first, and ends its reply with `[[A]]`, `[[B]]` or `[[tie]]`. Weighted mode: the judge
answers with one token, A or B, and the verdict is the probability mass the server reports
for each letter among the first token's top log-probabilities (P(A) / (P(A) + P(B))), a
graded preference instead of a hard choice. Which side is A is decided per task by a fixed
seed, from the task's text (so it does not depend on the set's order or on which tasks
were already judged): the contestant is A when the first 32 bits of
sha256("<seed>\\x1f<instruction>\\x1f<input>") form an even number. With both orders, each
pair is judged a second time with the sides swapped.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from assess.eval_set import EvalItem, normalize

Verdict = Literal["A", "B", "tie"]
Outcome = Literal["win", "tie", "loss"]  # for the contestant

JUDGE_SYSTEM = "You compare two answers to the same request, carefully and impartially."

# The part both prompts share: the criteria, the request and the two answers.
_COMPARE = """\
Two assistants were given the same request. Decide which answer would serve the person who \
made the request better: it does what was asked, is correct, is helpful and complete, and \
is no longer than it needs to be. Judge what the answers say, not how long they are or how \
confident they sound. The order in which they are shown says nothing about their quality.

<request>
{instruction}
</request>
{input_block}
<answer_a>
{answer_a}
</answer_a>

<answer_b>
{answer_b}
</answer_b>

"""
JUDGE_PROMPT = _COMPARE + """\
Give your reasons in a few sentences. Then end your reply with the verdict on a line of its \
own: [[A]] if answer A is better, [[B]] if answer B is better, [[tie]] if neither is better."""
WEIGHTED_PROMPT = _COMPARE + "Reply with one character and nothing else: A if answer A is better, B if answer B is better."

# Alternatives asked for at the verdict's position: OpenAI's maximum, and vLLM's default cap.
WEIGHTED_TOP_LOGPROBS = 20
WEIGHTED_MAX_TOKENS = 1

_INPUT_BLOCK = "\n<input>\n{input}\n</input>\n"
_VERDICT = re.compile(r"\[\[\s*(a|b|tie)\s*\]\]", re.IGNORECASE)


def contestant_first(item: EvalItem, seed: int) -> bool:
    """True when the contestant's answer is shown first (as A) in the item's seeded order."""
    text = f"{seed}\x1f{normalize(item.instruction)}\x1f{normalize(item.input)}"
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 2 == 0


def judge_messages(item: EvalItem, answer_a: str, answer_b: str, weighted: bool = False) -> list[dict[str, str]]:
    """The judge's messages for one ordered pair (the one-token prompt when `weighted`)."""
    input_block = _INPUT_BLOCK.format(input=item.input) if item.input else ""
    user = (WEIGHTED_PROMPT if weighted else JUDGE_PROMPT).format(
        instruction=item.instruction, input_block=input_block, answer_a=answer_a, answer_b=answer_b)
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class ParsedVerdict:
    """The verdict, or None with the reason it could not be read."""

    verdict: Verdict | None
    problem: str = ""


def parse_verdict(reply: str) -> ParsedVerdict:
    """Read `[[A]]`/`[[B]]`/`[[tie]]` from a reply. Several marks that disagree, or none, make
    the reply unparseable: it is counted as such, never guessed."""
    found = {m.group(1).lower() for m in _VERDICT.finditer(reply)}
    if not found:
        return ParsedVerdict(None, "no verdict")
    if len(found) > 1:
        return ParsedVerdict(None, "conflicting verdicts")
    mark = found.pop()
    return ParsedVerdict("tie" if mark == "tie" else mark.upper())  # type: ignore[arg-type]


def outcome_for(verdict: Verdict, contestant_is_a: bool) -> Outcome:
    """The contestant's result from a verdict and the side it was shown on."""
    if verdict == "tie":
        return "tie"
    return "win" if (verdict == "A") == contestant_is_a else "loss"


def combine(outcomes: list[Outcome]) -> Outcome:
    """One outcome per task from its judgments: both orders must agree, a split is a tie."""
    first = outcomes[0]
    return first if all(o == first for o in outcomes) else "tie"


@dataclass(frozen=True)
class WeightedVerdict:
    """The probability that answer A is the better one, or None with the reason it could not be read."""

    preference_a: float | None
    problem: str = ""


def weighted_verdict(top_logprobs: Sequence[tuple[str, float]] | None) -> WeightedVerdict:
    """P(A) / (P(A) + P(B)) from the first token's alternatives. Tokens count for a letter
    after stripping spaces and case ("A", " a"); mass on other tokens is left out. Neither
    letter among the alternatives makes the verdict unreadable (never guessed)."""
    if top_logprobs is None:
        return WeightedVerdict(None, "no logprobs in the reply")
    mass = {"A": 0.0, "B": 0.0}
    for token, logprob in top_logprobs:
        letter = token.strip().upper()
        if letter in mass:
            mass[letter] += math.exp(logprob)
    total = mass["A"] + mass["B"]
    if total <= 0.0:
        return WeightedVerdict(None, "neither A nor B among the top tokens")
    return WeightedVerdict(mass["A"] / total)


def contestant_preference(preference_a: float, contestant_is_a: bool) -> float:
    """The contestant's probability of being the better answer, from P(A) and its side."""
    return preference_a if contestant_is_a else 1.0 - preference_a
