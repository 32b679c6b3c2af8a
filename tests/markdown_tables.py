"""Reading the cards' Markdown tables back, for the tests that compare their figures with the summaries."""

from __future__ import annotations


def table(body: str, heading: str) -> dict[str, str]:
    """The `| name | value |` rows of the first table under `## heading` (its header row left out)."""
    section = body.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {name.strip(): value.strip() for name, value in rows[1:]}
