"""The evolution loop: rounds of rewrite -> judge -> answer -> eliminate, over chunks of examples.

Round r rewrites every example's latest kept version once (the input example in round 1;
after a failed rewrite the same version is rewritten again in the next round, with the
operation that round draws). A chunk of examples goes through the three calls in turn, each
batch of calls concurrent; then its candidates are decided in example order, so the dedup,
the kept set and every file are the same whatever order the answers arrived in, and a rerun
replays the journal through the same steps and asks only for what it lacks.

Stops: the caps (`Calls`: exit 3), the stall guard (`--stall_candidates` eliminated in a row:
exit 1), an error or an interrupt; the outputs and the summary are written in every case.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from core.exit_codes import InputError, Terminated
from core.files import atomic_write_json, missing_dirs, remove_empty_dirs
from core.openai_client.client import ClientSettings
from core.openai_client.cost import count_tokens, estimate_cost_usd, required_prices
from core.openai_client.credentials import check_credentials
from core.openai_client.journal import Journal
from core.openai_client.request import GenerationError
from core.records import read_examples
from generate.config import GenerateConfig
from generate.dedup.index import Deduplicator
from generate.dedup.tokens import TokenizerName
from generate.evolve.calls import Calls, Role
from generate.evolve.config import EvolveConfig
from generate.evolve.eliminate import (
    copied_prompt_words,
    is_refusal,
    is_stop_words_only,
    parse_verdict,
    strip_quotes,
)
from generate.evolve.operations import REWRITES_INPUT, choose_operation
from generate.evolve.outcome import (
    Candidate,
    Outcome,
    RoundCounts,
    summary_dict,
    write_outputs,
)
from generate.evolve.prompts import REWRITES, PromptSet, choose_language, load
from generate.parsing import FilterSettings, rejection_reason
from generate.quality.detectors import find_defect, normalise_input
from generate.run_lock import RunLock
from generate.seeds.language import PROFILES, detect_language, resolve_language
from generate.seeds.language_check import LanguagePolicy
from generate.seeds.tasks import SeedTask

log = logging.getLogger("generate.evolve")

WRITE_EVERY_S = 30.0  # OUT is rewritten at most this often while a round runs (and at its end)


class StallError(GenerationError):
    """Many candidates in a row were eliminated: paying for more would buy nothing."""


class _Capped(Exception):
    """A cap refused a call: the run ends cleanly with what it decided."""


@dataclass(frozen=True)
class Plan:
    """Everything settled before a file is written."""

    config: EvolveConfig
    items: list[dict[str, Any]]
    language: str
    language_why: str
    prompts: PromptSet
    english: PromptSet
    filters: FilterSettings
    tokenizer: TokenizerName
    roles: dict[str, Role]
    # The generate stage's language check, with the input examples standing in for seed tasks:
    # a rewrite or answer that drifts out of the data's language is eliminated as wrong_language.
    language_policy: LanguagePolicy

    @property
    def settings(self) -> dict[str, Any]:
        """What answers depend on besides their prompts (which the journal's keys hold)."""
        config = self.config
        return {"model_name": config.model_name, "judge_model": config.judge, "temperature": config.temperature,
                "rewrite_max_tokens": config.rewrite_max_tokens, "judge_max_tokens": config.judge_max_tokens,
                "answer_max_tokens": config.answer_max_tokens}


def language_settings(code: str, instructions: Sequence[str]) -> GenerateConfig:
    """The generate stage's settings for a language (filters, dedup tokenizer), its defaults filled
    in; a language the stage has no profile for gets its profile for other languages."""
    known = code if code in PROFILES else "other"
    resolved, _ = resolve_language(dataclasses.replace(GenerateConfig(), language=known), instructions)
    return resolved


def plan(config: EvolveConfig) -> Plan:
    """Read the input, settle the language, prompts and prices; write nothing."""
    config.validate()
    items = read_examples(config.input)
    if not items:
        raise InputError(f"{config.input}: no examples to evolve")
    instructions = [item["instruction"] for item in items]
    code, why = choose_language(config.language, instructions, detect_language(instructions).code)
    prompts, english = load(code), load("en")
    generate_settings = language_settings(code, instructions)
    answers = {"temperature": config.temperature, "top_p": 1.0, "stop": (), "max_concurrency": config.max_concurrency,
               "max_retries": config.max_retries, "request_timeout": config.request_timeout}
    main_prices = required_prices(config.model_name, config.price_input, config.price_output)
    judge_prices = required_prices(config.judge, config.price_input, config.price_output)
    roles = {
        "rewrite": Role("rewrite", ClientSettings(model=config.model_name, max_tokens=config.rewrite_max_tokens,
                                                  **answers), main_prices),
        "judge": Role("judge", ClientSettings(model=config.judge, max_tokens=config.judge_max_tokens,
                                              **{**answers, "temperature": 0.0}), judge_prices),
        "answer": Role("answer", ClientSettings(model=config.model_name, max_tokens=config.answer_max_tokens,
                                                **answers), main_prices),
    }
    examples = [SeedTask(item["instruction"], item["input"], item["output"], line=n)
                for n, item in enumerate(items, start=1)]
    policy = LanguagePolicy.for_run(generate_settings, examples, detect_language(instructions).code)
    check_credentials()
    return Plan(config, items, code, why, prompts, english, FilterSettings.from_config(generate_settings),
                generate_settings.dedup_tokenizer, roles, policy)


class Evolution:
    """The state of one run: the latest version of each example, the dedup, what was decided."""

    def __init__(self, settled: Plan, calls: Calls) -> None:
        self.plan = settled
        self.config = settled.config
        self.calls = calls
        self.outcome = Outcome(settled.items)
        self.pool: list[dict[str, Any]] = [dict(item) for item in settled.items]
        self.dedup = Deduplicator([item["instruction"] for item in settled.items],
                                  threshold=self.config.similarity_threshold, tokenizer=settled.tokenizer)
        self.rounds_done = 0
        self.round = 1
        self.decided_in_round = 0
        self.estimate: dict[str, Any] | None = None
        self._written_at = time.monotonic()
        # Chunks small enough that the stall guard stops before paying for many more.
        limit = self.config.stall_candidates or 64
        self.chunk_size = max(1, min(64, 4 * self.config.max_concurrency, limit))

    # --- the steps of one chunk ---------------------------------------------------------------------
    def _rewrite(self, candidates: list[Candidate]) -> list[Candidate]:
        prompts = self.plan.prompts
        asked = {c.key: prompts.task(c.operation, c.parent["instruction"], c.parent["input"]) for c in candidates}
        answers = self._ask("rewrite", asked)
        for c in candidates:
            completion = answers[c.key]
            text = strip_quotes(completion.text)
            if c.operation in REWRITES_INPUT:
                c.instruction, c.input = c.parent["instruction"], normalise_input(text)
            else:
                c.instruction, c.input = text, "" if c.operation == "breadth" else c.parent["input"]
            copied = copied_prompt_words(text, prompts, self.plan.english)
            if completion.finish_reason == "length":
                c.eliminate("rewrite_truncated", f"cut at --rewrite_max_tokens {self.config.rewrite_max_tokens}")
            elif copied is not None:
                c.eliminate("copies_prompt", copied)
            else:
                reason = rejection_reason(c.instruction, self.plan.filters)
                if reason is not None:
                    c.eliminate(reason)
        return [c for c in candidates if c.reason is None]

    def _judge(self, candidates: list[Candidate]) -> list[Candidate]:
        prompts = self.plan.prompts
        asked = {c.key: prompts.fill("judge", original_instruction=c.parent["instruction"].strip(),
                                     original_input=prompts.shown_input(c.parent["input"]),
                                     rewritten_instruction=c.instruction.strip(),
                                     rewritten_input=prompts.shown_input(c.input)) for c in candidates}
        answers = self._ask("judge", asked)
        for c in candidates:
            verdict = parse_verdict(answers[c.key].text)
            if verdict is not True:
                c.eliminate("no_information_gain", "judged no gain" if verdict is False else
                            f"no verdict in {answers[c.key].text.strip()[:80]!r}")
        return [c for c in candidates if c.reason is None]

    def _answer(self, candidates: list[Candidate]) -> list[Candidate]:
        prompts, english = self.plan.prompts, self.plan.english
        answers = self._ask("answer", {c.key: prompts.task("answer", c.instruction, c.input) for c in candidates})
        for c in candidates:
            completion = answers[c.key]
            c.output = completion.text.strip()
            if completion.finish_reason == "length":
                c.eliminate("answer_truncated", f"cut at --answer_max_tokens {self.config.answer_max_tokens}")
            elif is_refusal(c.instruction, c.input, c.output, (*prompts.apology, *english.apology)):
                c.eliminate("answer_refusal")
            elif is_stop_words_only(c.output, prompts.stop_words | english.stop_words):
                c.eliminate("answer_stop_words_only")
            elif (wrong := self.plan.language_policy.check(c.instruction, c.output)) is not None:
                c.eliminate("wrong_language", f"{wrong.field} in {wrong.language}")
            else:
                defect = find_defect({"instruction": c.instruction, "input": c.input, "output": c.output})
                if defect is not None:
                    c.eliminate(defect)
        return [c for c in candidates if c.reason is None]

    def _dedup(self, candidates: list[Candidate]) -> None:
        """ROUGE-L against the input's instructions and those kept before, in example order. An input
        rewrite keeps its instruction (already in the index), so only its verdict and answer judge it."""
        new = [c for c in candidates if c.operation not in REWRITES_INPUT]
        for c, decision in zip(new, self.dedup.add_many([c.instruction for c in new])):
            if not decision.keep:
                c.eliminate("similar", f"ROUGE-L {decision.score:.3f} to {decision.nearest!r}")

    def _ask(self, role: str, prompts: dict[str, str]) -> dict[str, Any]:
        answers = self.calls.ask(role, prompts)
        if len(answers) < len(prompts):
            raise _Capped()
        return answers

    def chunk(self, origins: Sequence[int]) -> int:
        """Rewrite, judge, answer and decide the candidates of these examples; returns how many were decided."""
        config, round_number = self.config, self.round
        candidates: list[Candidate] = []
        skipped = 0
        for origin in origins:
            parent = self.pool[origin]
            operation = choose_operation(config.seed, origin, round_number, config.operations,
                                         bool(parent["input"].strip()))
            if operation is None:
                skipped += 1
            else:
                candidates.append(Candidate(origin, round_number, operation, parent))
        alive = self._rewrite(candidates)
        alive = self._judge(alive) if alive else alive
        alive = self._answer(alive) if alive else alive
        self._dedup(alive)
        for c in candidates:
            self.outcome.record(c)
            if c.reason is None:
                self.pool[c.origin] = c.as_item()
        if skipped:
            self.outcome.rounds.setdefault(round_number, RoundCounts()).skipped += skipped
        self.decided_in_round += len(origins)
        return len(origins)

    # --- the whole run ----------------------------------------------------------------------------------
    def run(self, bar: tqdm) -> None:
        config = self.config
        total = len(self.pool)
        for self.round in range(1, config.rounds + 1):
            self.decided_in_round = 0
            for start in range(0, total, self.chunk_size):
                bar.update(self.chunk(range(start, min(start + self.chunk_size, total))))
                if config.stall_candidates and self.outcome.streak >= config.stall_candidates:
                    raise StallError(self.outcome.stall_message(config.stall_candidates))
                if time.monotonic() - self._written_at >= WRITE_EVERY_S:
                    self.write()
            self.rounds_done = self.round
            self.write()

    def write(self) -> int:
        self._written_at = time.monotonic()
        return write_outputs(self.config.output, self.config.eliminated_path, self.outcome,
                             self.config.keep_originals)

    def log_estimate(self) -> None:
        """Before the first call: at most how many calls and what cost the rest can take."""
        self.estimate = estimate_rest(self.plan, self.pool, self.round, self.decided_in_round,
                                      self.calls.stats.cost_usd)
        e = self.estimate
        cap = self.config.max_cost_usd
        log.info("%d calls at most for what is left (%d candidates: a rewrite, a verdict and an answer each; "
                 "fewer as candidates are eliminated): estimated cost at most $%.4f (already paid $%.4f%s)",
                 e["calls_at_most"], e["candidates_left"], e["cost_usd_at_most"], e["paid_before_usd"],
                 "" if cap is None else f", cap --max_cost_usd=${cap:.4f}")
        if cap is not None and e["paid_before_usd"] + e["cost_usd_at_most"] > cap:
            log.warning("the estimate exceeds --max_cost_usd: the run may stop at the cap; rerun with a higher "
                        "cap to go on")


def estimate_rest(settled: Plan, pool: Sequence[dict[str, Any]], round_number: int, decided: int,
                  paid: float) -> dict[str, Any]:
    """Calls and cost, at most, of the candidates left: prompts counted with tiktoken, every answer
    at its token limit; in later rounds an instruction counts at the rewrite's token limit."""
    config, prompts = settled.config, settled.prompts
    model = config.model_name
    rewrite, judge, answer = (settled.roles[name] for name in ("rewrite", "judge", "answer"))
    left_now = max(0, len(pool) - decided)
    left_later = (config.rounds - round_number) * len(pool)
    if left_now + left_later == 0:
        return {"candidates_left": 0, "calls_at_most": 0, "cost_usd_at_most": 0.0, "paid_before_usd": round(paid, 6)}
    empty = {name: count_tokens(model, [prompts.task(name, "", "")]) for name in (*REWRITES, "answer")}
    judge_empty = count_tokens(config.judge, [prompts.fill("judge", original_instruction="", original_input="",
                                                           rewritten_instruction="", rewritten_input="")])
    template = max(empty[name] for name in config.operations)
    texts = [count_tokens(model, [item["instruction"], item["input"]]) for item in pool[decided:]]
    inputs = sum(count_tokens(model, [item["input"]]) for item in pool) / len(pool)
    r_max = config.rewrite_max_tokens

    def cost(role: Role, prompt_tokens: float, answer_tokens: float) -> float:
        return estimate_cost_usd(int(prompt_tokens) + 16, int(answer_tokens), role.prices) or 0.0

    def one(text_tokens: float) -> float:
        return (cost(rewrite, template + text_tokens, r_max) + cost(judge, judge_empty + text_tokens + r_max + inputs,
                                                                   config.judge_max_tokens)
                + cost(answer, empty["answer"] + r_max + inputs, config.answer_max_tokens))

    total = sum(one(t) for t in texts) + left_later * one(r_max + inputs)
    return {"candidates_left": left_now + left_later, "calls_at_most": 3 * (left_now + left_later),
            "cost_usd_at_most": round(total, 6), "paid_before_usd": round(paid, 6)}


def evolve(config: EvolveConfig) -> dict[str, Any]:
    """Run (or resume) an evolution; returns the summary (written beside OUT in every case but a
    failed start). Raises StallError and the other UserErrors with one-line messages; a cap ends the
    run cleanly with `stopped_by` naming it."""
    started = time.monotonic()
    settled = plan(config)
    folder = config.output.parent
    new_dirs = missing_dirs(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{folder}: cannot create it ({err.strerror or err})") from None
    try:
        lock = RunLock.acquire(folder)
    except BaseException:
        remove_empty_dirs(new_dirs)
        raise
    try:
        journal = Journal.open(config.journal_path, settled.settings)
        calls = Calls(journal, settled.roles, max_requests=config.max_requests, max_cost_usd=config.max_cost_usd)
        return _execute(settled, calls, started)
    finally:
        lock.release()


def _execute(settled: Plan, calls: Calls, started: float) -> dict[str, Any]:
    config = settled.config
    evolution = Evolution(settled, calls)
    calls.before_first_call = evolution.log_estimate
    log.info("language %s; %d examples, %d rounds, operations %s", settled.language_why, len(settled.items),
             config.rounds, ",".join(config.operations))
    bar = tqdm(total=config.rounds * len(settled.items), desc="evolved", unit="cand", disable=not config.progress,
               dynamic_ncols=True)
    stopped_by: str | None = None
    error: str | None = None
    try:
        evolution.run(bar)
        stopped_by = "rounds"
    except _Capped:
        stopped_by = calls.capped
    except BaseException as err:
        error = str(err) or type(err).__name__
        stopped_by = ("stall" if isinstance(err, StallError) else "terminated" if isinstance(err, Terminated)
                      else "interrupted" if isinstance(err, KeyboardInterrupt) else "error")
        raise
    finally:
        bar.close()
        calls.close()
        calls.count_journal()
        calls.journal.close()
        summary = _finish(settled, evolution, calls, stopped_by, error, started)
    return summary


def _finish(settled: Plan, evolution: Evolution, calls: Calls, stopped_by: str | None, error: str | None,
            started: float) -> dict[str, Any]:
    config = settled.config
    try:
        written = evolution.write()
    except OSError as err:
        if error is None:
            raise InputError(f"cannot write {config.output}: {err.strerror or err}") from None
        log.error("could not write %s: %s", config.output, err)
        written = 0
    stats = calls.stats
    prices = {role.name: {"model": role.settings.model, "input": role.prices[0], "output": role.prices[1]}
              for role in settled.roles.values()}
    summary = summary_dict(
        config=config, outcome=evolution.outcome, language=settled.language, language_why=settled.language_why,
        rounds_done=evolution.rounds_done, finished=evolution.rounds_done == config.rounds, stopped_by=stopped_by,
        error=error, estimate=evolution.estimate, prices=prices, elapsed_s=time.monotonic() - started,
        written=written, calls={
            "requests": calls.requests_total, "requests_this_run": calls.requests_this_run,
            "requests_resumed_from_journal": stats.requests_replayed, "requests_by_role": dict(stats.by_role),
            "api_calls": stats.api_calls, "retries": stats.retries, "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens, "tokens_estimated_with_tiktoken": stats.tokens_estimated,
            "estimated_cost_usd": round(stats.cost_usd, 6), "max_cost_usd": config.max_cost_usd,
            "max_requests": config.max_requests,
        })
    try:
        atomic_write_json(config.summary_path, summary)
    except OSError as err:
        if error is None:
            raise InputError(f"cannot write {config.summary_path}: {err.strerror or err}") from None
        log.error("could not write %s: %s", config.summary_path, err)
    return summary
