"""A blind pairwise comparison by people (`python -m assess.human`, `make human-eval`).

A local page shows one task at a time with two answers side by side, in an order the person
cannot see through; verdicts (A, B, tie, both bad) are saved as they are given, by annotator,
and summarised with the judge's statistics, agreement between people, and the judge's
agreement with them (pairs, verdicts, agreement, summary, server, cli).
"""
