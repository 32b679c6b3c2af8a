"""The one spending cap rule: paid + reserved + the next call's bound stays within the cap."""

from __future__ import annotations

import threading

from core.openai_client.budget import SpendBudget


def test_a_call_goes_out_only_while_its_bound_fits() -> None:
    budget = SpendBudget(cap=1.0, spent=0.25)
    assert budget.try_reserve(0.5) and budget.reserved == 0.5
    assert not budget.would_exceed(0.25)  # exactly at the cap fits
    assert budget.try_reserve(0.25)
    assert not budget.try_reserve(0.01) and budget.stopped  # past the cap: refused, and said so
    budget.release(0.5)  # an answer landed: its reservation is free again ...
    budget.pay(0.125)  # ... and what it cost is paid
    assert (budget.spent, budget.reserved) == (0.375, 0.25)
    assert budget.try_reserve(0.375) and not budget.try_reserve(0.001)


def test_float_sums_at_the_cap_are_not_refused() -> None:
    budget = SpendBudget(cap=0.3)
    for _ in range(3):
        assert budget.try_reserve(0.1)  # 0.1 + 0.1 + 0.1 > 0.3 in floats, by 4e-17
    assert not budget.try_reserve(1e-9)


def test_no_cap_only_counts() -> None:
    budget = SpendBudget(cap=None)
    assert budget.try_reserve(1e9) and not budget.would_exceed(1e12)
    budget.set_spent(3.0)
    assert budget.spent == 3.0 and not budget.stopped


def test_reservations_from_many_threads_never_pass_the_cap() -> None:
    budget = SpendBudget(cap=10.0)
    granted: list[bool] = []

    def worker() -> None:
        for _ in range(100):
            granted.append(budget.try_reserve(0.01))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 800 and budget.reserved <= 10.0 + 1e-9
    assert not budget.try_reserve(2.1)
