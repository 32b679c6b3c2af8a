"""Adaptive concurrency for API calls: use the server's rate limit fully without a storm of 429s.

Two signals steer it. When the server reports its request limit (OpenAI's
`x-ratelimit-limit-requests` header, requests per minute), call starts are spaced to that
rate and the window opens to its maximum at once. Independently, the number of calls in
flight follows AIMD as TCP does: it starts small, grows by one per success until the first
429 (slow start), then grows by one per round of successes and halves on a 429, at most
once per round trip.
"""

from __future__ import annotations

import threading
import time

# Pace at a hair under the reported limit: the server's window and our clock differ slightly.
RATE_MARGIN = 0.98


class AdaptiveLimiter:
    """Gatekeeper for call starts: `acquire` before a call, `release` after it."""

    def __init__(self, max_in_flight: int, initial: int = 4) -> None:
        self.max_in_flight = max_in_flight
        self.limit = float(min(initial, max_in_flight))
        self.in_flight = 0
        self.rate_limited = 0  # 429s seen
        self.reported_rpm: float | None = None
        self._interval = 0.0  # seconds between call starts when the server reported a limit
        self._next_start = 0.0
        self._slow_start = True
        self._last_cut = 0.0
        self._latency = 1.0  # smoothed seconds per call, the "round trip" for AIMD
        self._cond = threading.Condition()

    def acquire(self, stop: threading.Event) -> bool:
        """Block until a call may start; False when `stop` was set meanwhile."""
        with self._cond:
            while not stop.is_set():
                now = time.monotonic()
                if self.in_flight < int(self.limit):
                    if now >= self._next_start:
                        self.in_flight += 1
                        self._next_start = max(now, self._next_start) + self._interval
                        return True
                    self._cond.wait(self._next_start - now)
                else:
                    self._cond.wait(0.5)
            return False

    def release(self, latency_s: float | None = None) -> None:
        """A call finished (successfully or not)."""
        with self._cond:
            self.in_flight -= 1
            if latency_s is not None:
                self._latency = 0.8 * self._latency + 0.2 * latency_s
            self._cond.notify_all()

    def on_success(self) -> None:
        """An HTTP response that was not a 429: grow the window."""
        with self._cond:
            step = 1.0 if self._slow_start else 1.0 / max(self.limit, 1.0)
            self.limit = min(float(self.max_in_flight), self.limit + step)
            self._cond.notify_all()

    def on_rate_limited(self) -> None:
        """A 429: halve the window, once per round trip (a burst of 429s is one congestion event)."""
        with self._cond:
            self.rate_limited += 1
            now = time.monotonic()
            self._slow_start = False
            if now - self._last_cut >= max(self._latency, 0.5):
                self.limit = max(1.0, self.limit / 2)
                self._last_cut = now

    def on_reported_limit(self, requests_per_minute: float) -> None:
        """The server said how many requests per minute it allows: space call starts accordingly."""
        if requests_per_minute <= 0:
            return
        with self._cond:
            if self.reported_rpm != requests_per_minute:
                if self.reported_rpm is None and self._slow_start:
                    # The spacing now bounds the rate, so there is nothing left to probe for.
                    self.limit = float(self.max_in_flight)
                self.reported_rpm = requests_per_minute
                self._interval = 60.0 / (requests_per_minute * RATE_MARGIN)
                self._cond.notify_all()
