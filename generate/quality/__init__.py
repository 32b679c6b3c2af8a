"""Data quality: the known defects of self-instruct data, found, removed, rated and shown.

- `detectors`: the eight defect classes, each a few named rules answering the matched span
  (the simple ones; `references`, `refusals` and `cut_off` read the item's context through
  `context`; `evidence` holds the Hit and the settings), used during generation and below;
- `domain`: the rules the domain's own examples (the seed tasks) relax for a run;
- `rejected`: generation's rejected candidates with their evidence (generate_rejected.jsonl);
- `clean` (`python -m generate.clean`): the detectors applied to any Alpaca-format file;
- `rate` (`python -m generate.rate`): an LLM judge scores each example, under a spending cap;
- `report` (`python -m generate.report`): a run's output folder as one HTML page with plots.
"""
