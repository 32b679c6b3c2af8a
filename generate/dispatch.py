"""When the next request may go out: near the in-order frontier, short of the target, within the
stall guard, and never past a cap.

Without a gate a request stuck in retries lets the others run ahead, and the last requests
of a run would be paid for and thrown away. Requests are let out while the yield seen so far
says the ones already out are unlikely to reach the target, and while the requests in a row
that kept nothing, plus those out, stay within `stall_requests`: a stalled run stops with
exactly that many requests paid for nothing.
"""

from __future__ import annotations

import threading

from core.openai_client.budget import SpendBudget
from core.openai_client.cost import estimate_cost_usd
from core.openai_client.request import GenerationRequest

# Tokens a chat message adds around its text (role and separators): a few; 16 is generous.
MESSAGE_OVERHEAD_TOKENS = 16

# Before any answer is processed, each prompt is assumed to bring this many kept items. A
# prompt asks for ~16 new tasks; early in a run most survive the filters and dedup. Too low a
# guess only dispatches more at the start (the measured yield takes over with the first
# processed answer); too high a guess delays the second wave by one answer.
PRIOR_KEPT_PER_PROMPT = 6.0


def worst_case_cost_usd(
    request: GenerationRequest, max_tokens: int, prices: tuple[float, float] | None, price_factor: float
) -> float:
    """The most a request can cost: every prompt byte a token (byte-level BPE never does worse)
    plus a message's overhead, and `max_tokens` of answer per prompt."""
    if prices is None or price_factor == 0:
        return 0.0
    prompt_bound = sum(len(p.encode("utf-8")) + MESSAGE_OVERHEAD_TOKENS for p in request.prompts)
    cost = estimate_cost_usd(prompt_bound, max_tokens * len(request.prompts), prices, price_factor)
    return cost or 0.0


class DispatchGate:
    """Holds back request dispatch (see the module docstring).

    Caps are hard: `max_requests` counts requests answered before this invocation plus
    those let out now; `max_cost_usd` is the spend budget's rule (`core.openai_client.budget`):
    the estimated cost so far plus, for each request out, the most it can cost. When a cap
    leaves nothing to dispatch, `capped` names it and the request iterator ends (the backend
    then finishes what is out).
    """

    def __init__(
        self,
        lookahead: int,
        target: int,
        *,
        stall_requests: int = 0,
        max_requests: int | None = None,
        max_cost_usd: float | None = None,
        answered_before: int = 0,
        spent_usd: float = 0.0,
        prior_per_request: float = 0.0,
    ) -> None:
        # The loop's own thread: a backend pulling requests there (local, batch) must never
        # block on the gate, since only that thread moves the frontier. Caps still apply there.
        self.owner = threading.get_ident()
        self.lookahead = lookahead
        self.target = target
        self.stall_requests = stall_requests
        self.max_requests = max_requests
        self.budget = SpendBudget(max_cost_usd, spent_usd)
        self.answered_before = answered_before
        # Kept items one request is assumed to bring before any answer is processed: without it
        # a 30-item run let out the whole lookahead (16 requests) and used 2 of them.
        self.prior_per_request = prior_per_request
        self.frontier = 0  # next index to be processed
        self.kept = 0
        self.processed = 0
        self.streak = 0  # processed requests in a row that kept nothing
        self.dispatched = 0  # requests let out by this invocation
        self.in_flight: dict[int, float] = {}  # index -> the most it can cost
        self.capped: str | None = None
        self.closed = False
        self._cond = threading.Condition()

    def advance(self, frontier: int, kept: int, processed: int, *, streak: int = 0,
                spent_usd: float | None = None, landed: int | None = None) -> None:
        """The loop's news: the frontier moved, or request `landed` was answered (costing `spent_usd` so far)."""
        with self._cond:
            self.frontier, self.kept, self.processed, self.streak = frontier, kept, processed, streak
            if spent_usd is not None:
                self.budget.set_spent(spent_usd)
            if landed is not None:
                self.budget.release(self.in_flight.pop(landed, 0.0))
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _cap(self, worst_usd: float) -> str | None:
        if self.max_requests is not None and self.answered_before + self.dispatched >= self.max_requests:
            return "max_requests"
        if self.budget.would_exceed(worst_usd):
            return "max_cost_usd"
        return None

    def _may_dispatch(self, index: int) -> bool:
        ahead = index - self.frontier  # requests out (or answered) but not yet processed
        if ahead >= self.lookahead:
            return False
        if self.stall_requests and ahead >= self.stall_requests - self.streak:
            return False
        if ahead <= 0:
            return True
        if self.processed == 0:
            if self.prior_per_request <= 0:
                return True
            per_request = self.prior_per_request
        else:
            per_request = self.kept / self.processed
        # 0.7: a margin for yield that falls as the kept set grows (more near-duplicates).
        return self.kept + 0.7 * per_request * ahead < self.target

    def wait(self, index: int, worst_usd: float = 0.0) -> bool:
        """Block until request `index` may go out; False once the run is over or a cap is reached."""
        owner = threading.get_ident() == self.owner
        with self._cond:
            while True:
                if self.closed:
                    return False
                cap = self._cap(worst_usd)
                # max_requests never reopens; the cost cap does as answers free their reservation,
                # unless nothing is out (or this is the loop's thread, which must not block).
                if cap is not None and (cap == "max_requests" or owner or not self.in_flight):
                    self.capped = cap
                    self.closed = True
                    self._cond.notify_all()
                    return False
                if cap is None and (owner or self._may_dispatch(index)):
                    break
                self._cond.wait(0.5)
            self.dispatched += 1
            self.in_flight[index] = worst_usd
            self.budget.reserve(worst_usd)
            return True
