"""The one spending cap rule, for every loop that pays for calls (generation, rating).

A call may go out only while what was paid so far, plus the most the calls already in flight
can cost, plus the most this call can cost, stays within the cap: a run stopped by the cap
has never paid past it, whatever the answers turn out to cost. Each call's bound is reserved
when it goes out and released when its answer lands, when what it really cost is paid.
"""

from __future__ import annotations

import threading

# Float sums of per-call costs drift in the last bits; a call that fits exactly must not be refused.
TOLERANCE_USD = 1e-12


class SpendBudget:
    """Paid + reserved against `cap` (None: no cap, only the counting). Thread-safe."""

    def __init__(self, cap: float | None, spent: float = 0.0) -> None:
        self.cap = cap
        self.spent = spent
        self.reserved = 0.0
        self.stopped = False  # a call was refused: the cap ended the run
        self._lock = threading.Lock()

    def would_exceed(self, bound: float) -> bool:
        """True when a call costing at most `bound` does not fit beside what is paid and reserved."""
        with self._lock:
            return self._exceeds(bound)

    def _exceeds(self, bound: float) -> bool:
        return self.cap is not None and self.spent + self.reserved + bound > self.cap + TOLERANCE_USD

    def try_reserve(self, bound: float) -> bool:
        """Reserve `bound` for a call about to go out; False (and `stopped`) when it does not fit."""
        with self._lock:
            if self._exceeds(bound):
                self.stopped = True
                return False
            self.reserved += bound
            return True

    def reserve(self, bound: float) -> None:
        """Reserve `bound` unconditionally (the caller checked `would_exceed`)."""
        with self._lock:
            self.reserved += bound

    def release(self, bound: float) -> None:
        """A call's answer landed: its reservation is no longer needed."""
        with self._lock:
            self.reserved -= bound

    def pay(self, amount: float) -> None:
        """Add what an answer cost."""
        with self._lock:
            self.spent += amount

    def set_spent(self, total: float) -> None:
        """Replace what was paid by a total recomputed from all tokens so far."""
        with self._lock:
            self.spent = total
