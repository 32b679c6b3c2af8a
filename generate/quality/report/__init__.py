"""`python -m generate.report DIR`: one self-contained HTML page with plots about a run's data.

Reads what a run leaves in DIR (alpaca_data.json; when present generate_neighbours.jsonl,
generate_summary.json and rate_scores.jsonl) and writes DIR/generate_report.html, every plot
a PNG embedded in the page, so the file can be mailed or archived alone. Sections: diversity
(leading verbs and their objects), ROUGE-L to the nearest earlier instruction, lengths, share
of items with an input, rejections by reason and cost per kept item, defects found in the
kept data, and the judge's scores when `python -m generate.rate` has run.

- `load`: reading the run's files; `stats`: the numbers (lengths in language units, the
  verb/object heuristic); `plots`: matplotlib figures as PNG; `page`: the HTML;
  `build`: all four into the file; `cli`: the command line.
"""
