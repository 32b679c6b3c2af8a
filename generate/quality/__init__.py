"""Data quality: the known defects of self-instruct data, found, removed, rated and shown.

- `detectors`: one small pure function per defect class, used during generation and below;
- `clean` (`python -m generate.clean`): the detectors applied to any Alpaca-format file;
- `rate` (`python -m generate.rate`): an LLM judge scores each example, under a spending cap;
- `report` (`python -m generate.report`): a run's output folder as one HTML page with plots.
"""
