"""The Batch backend's units: custom ids and the compact ranges the journal keeps.

Real HTTP against the loopback server's /v1/files and /v1/batches (tests/fakes/batch_routes.py);
answers are checked against the server's own answer function, so a line mapped to the wrong
request or prompt fails.
"""

from __future__ import annotations

import pytest

from generate.backends.batch.jobs import (
    custom_id,
    from_ranges,
    parse_custom_id,
    to_ranges,
)


def test_custom_ids_and_ranges_round_trip() -> None:
    assert custom_id(7, None) == "request-7"
    assert custom_id(7, 3) == "request-7-3"
    assert parse_custom_id("request-7") == (7, None)
    assert parse_custom_id("request-7-3") == (7, 3)
    with pytest.raises(ValueError):
        parse_custom_id("other-7")
    assert to_ranges([5, 1, 2, 3, 9, 10]) == [[1, 4], [5, 6], [9, 11]]
    assert from_ranges([[1, 4], [5, 6], [9, 11]]) == [1, 2, 3, 5, 9, 10]
