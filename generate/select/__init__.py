"""Selection of the best subset (`python -m generate.select IN OUT --k N`): by a score (generate.rate's
rating, an LLM complexity score, or both multiplied) under a diversity rule (skip what is too close to
an example already chosen: embedding cosine, or ROUGE-L).

- `config`: the flags; `scores`: ratings read, complexity asked (through generate/evolve/calls.py);
- `choose`: the greedy rule; `embed`: sentence embeddings from a local model (the `embed` extra);
- `run`: one selection and its files; `cli`: the command line.
"""
