"""Calls to the model for an LLM step over many examples: journaled, capped, counted.

Every call goes through the shared client (core/openai_client/client.py) and is journaled
(fsync'd) before its answer is used. The journal is keyed by content: a call's number is its
role and a hash of its place (which example, which round) and its prompt, so a rerun asks
exactly the calls the journal lacks, whatever changed meanwhile (a new threshold, more
rounds), and nothing is asked twice. Spending follows the spend budget's rule
(core/openai_client/budget.py; each call bounded by `generate.dispatch.worst_case_cost_usd`),
and `--max_requests` counts every answered call in the journal: when a cap refuses a call,
the calls in flight are still collected, journaled and counted, and `capped` names the cap.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from core.openai_client.budget import SpendBudget
from core.openai_client.client import ClientSettings, OpenAIClient
from core.openai_client.cost import count_tokens, estimate_cost_usd
from core.openai_client.journal import Journal, JournalBackendState, record_to_result
from core.openai_client.request import Completion, GenerationRequest, GenerationResult
from generate.dispatch import MESSAGE_OVERHEAD_TOKENS, worst_case_cost_usd

log = logging.getLogger(__name__)

# A call's journal number: its role's number times ROLE_SPAN plus 56 bits of a hash.
ROLE_SPAN = 1 << 56
ROLE_NUMBERS = {"rewrite": 1, "judge": 2, "answer": 3, "complexity": 4}


@dataclass(frozen=True)
class Role:
    """One kind of call: what to ask for (the client's settings) and what a token costs."""

    name: str  # a key of ROLE_NUMBERS
    settings: ClientSettings
    prices: tuple[float, float]


@dataclass
class CallStats:
    """What was asked and paid, over every run into the same journal and in this one."""

    requests_replayed: int = 0  # answers this run took from the journal instead of asking
    by_role: dict[str, int] = field(default_factory=dict)  # answered calls in the journal, per role
    api_calls: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    tokens_estimated: bool = False  # some tokens were counted with tiktoken (no usage from the server)


def call_index(role: str, key: str, prompt: str) -> int:
    """The journal number of a call (see ROLE_SPAN)."""
    digest = hashlib.sha256(f"{key}\x1f{prompt}".encode()).hexdigest()
    return ROLE_NUMBERS[role] * ROLE_SPAN + int(digest[:14], 16)


def role_of(index: int) -> str | None:
    number = index // ROLE_SPAN
    return next((name for name, value in ROLE_NUMBERS.items() if value == number), None)


class Calls:
    """Asks the model for a batch of prompts of one role; answers come from the journal when it has them."""

    def __init__(self, journal: Journal, roles: Mapping[str, Role], *, max_requests: int | None,
                 max_cost_usd: float | None) -> None:
        self.journal = journal
        self.roles = dict(roles)
        self.max_requests = max_requests
        self.stats = CallStats()
        self.capped: str | None = None  # "max_requests" or "max_cost_usd" once a cap refused a call
        # Called once, before the first call this run makes (after the journal's answers were
        # used): the run logs its estimate of what is left there.
        self.before_first_call: Callable[[], None] | None = None
        self._first_call_done = False
        self._clients: dict[str, OpenAIClient] = {}
        self._counted: set[int] = set()
        self._prompt_uncounted: set[int] = set()  # answers without usage whose prompt is not counted yet
        self._at_start = len(journal.results)
        self.count_journal()
        self.budget = SpendBudget(max_cost_usd, self.stats.cost_usd)

    @property
    def requests_total(self) -> int:
        """Answered calls in the journal: everything paid for, by this run and earlier ones."""
        return len(self.journal.results)

    @property
    def requests_this_run(self) -> int:
        return len(self.journal.results) - self._at_start

    # --- accounting -------------------------------------------------------------------------------
    def _count(self, result: GenerationResult, role: Role | None) -> float:
        """Add an answer's tokens and cost to the totals, once; returns its cost."""
        index = result.request.index
        if index in self._counted:
            return 0.0
        self._counted.add(index)
        prompt_tokens, completion_tokens = result.prompt_tokens, result.completion_tokens
        model = role.settings.model if role is not None else "gpt-4o-mini"
        if prompt_tokens == 0 and completion_tokens == 0 and result.api_calls > 0:
            # No usage reported: tiktoken counts; the prompt only once it is known (see `ask`).
            completion_tokens = count_tokens(model, [c.text for c in result.completions])
            if result.request.prompts:
                prompt_tokens = count_tokens(model, result.request.prompts) + MESSAGE_OVERHEAD_TOKENS
            else:
                self._prompt_uncounted.add(index)
            self.stats.tokens_estimated = True
        prices = role.prices if role is not None else (0.0, 0.0)
        cost = estimate_cost_usd(prompt_tokens, completion_tokens, prices) or 0.0
        stats = self.stats
        stats.prompt_tokens += prompt_tokens
        stats.completion_tokens += completion_tokens
        stats.cost_usd += cost
        stats.api_calls += result.api_calls
        stats.retries += result.retries
        name = role.name if role is not None else "unknown"
        stats.by_role[name] = stats.by_role.get(name, 0) + 1
        return cost

    def count_journal(self) -> None:
        """Count every journaled answer not counted yet (at start; and at the end, for an answer an
        interrupt caught between the journal and the count)."""
        for index, record in list(self.journal.results.items()):
            if index not in self._counted:
                role = self.roles.get(role_of(index) or "")
                self._count(record_to_result(record, GenerationRequest(index, ())), role)

    def _count_prompt(self, request: GenerationRequest, role: Role) -> None:
        if request.index not in self._prompt_uncounted:
            return
        self._prompt_uncounted.discard(request.index)
        tokens = count_tokens(role.settings.model, request.prompts) + MESSAGE_OVERHEAD_TOKENS
        self.stats.prompt_tokens += tokens
        cost = estimate_cost_usd(tokens, 0, role.prices) or 0.0
        self.stats.cost_usd += cost
        self.budget.pay(cost)

    # --- asking -----------------------------------------------------------------------------------
    def _client(self, role: Role) -> OpenAIClient:
        if role.name not in self._clients:
            self._clients[role.name] = OpenAIClient(role.settings, JournalBackendState(self.journal))
        return self._clients[role.name]

    def ask(self, role_name: str, prompts: Mapping[str, str]) -> dict[str, Completion]:
        """The answers to `prompts` (place key -> prompt), from the journal or the model.

        Returns every answer it has: all of them, unless a cap refused some calls (then
        `capped` is set and the missing keys are absent).
        """
        role = self.roles[role_name]
        answers: dict[str, Completion] = {}
        todo: list[tuple[str, GenerationRequest]] = []
        for key, prompt in prompts.items():
            request = GenerationRequest(call_index(role_name, key, prompt), (prompt,))
            record = self.journal.results.get(request.index)
            if record is None:
                todo.append((key, request))
                continue
            self._count_prompt(request, role)
            answers[key] = record_to_result(record, request).completions[0]
            self.stats.requests_replayed += 1
        if not todo or self.capped is not None:
            return answers
        if not self._first_call_done:
            self._first_call_done = True
            if self.before_first_call is not None:
                self.before_first_call()
        keys = {request.index: key for key, request in todo}
        bounds = {request.index: worst_case_cost_usd(request, role.settings.max_tokens, role.prices, 1.0)
                  for _, request in todo}

        answered_before = self.requests_total

        def requests() -> Iterator[GenerationRequest]:
            for sent, (_, request) in enumerate(todo):
                # Every call let out is answered (and journaled) or fails the run: count it now.
                if self.max_requests is not None and answered_before + sent >= self.max_requests:
                    self.capped = "max_requests"
                    return
                if not self.budget.try_reserve(bounds[request.index]):
                    self.capped = "max_cost_usd"
                    return
                yield request

        for result in self._client(role).run(requests()):
            self.journal.append_result(result)  # durable before it is used
            self.budget.release(bounds[result.request.index])
            self.budget.pay(self._count(result, role))
            answers[keys[result.request.index]] = result.completions[0]
        return answers

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
