"""Recipes: one YAML file holding each stage's settings, run by `make all RECIPE=...` or
`python -m recipe RECIPE.yaml`.

The runner is an orchestrator: it runs every stage as its own command (`python -m generate`,
`python -m train.launch ... -m train`, `python -m assess`, `python -m recover make_diff`,
`python -m export`) with flags built from the recipe, and imports none of their code.

- `spec`: the recipe file, read and checked; `stages`: each stage as a command;
- `state`: what ran with which settings (`<workdir>/recipe_state.json`) and the workdir lock;
- `preflight`: whether a stage can run on this machine (an API endpoint, GPUs);
- `run`: the plan (run or skip, and why) and the run; `cli`: the entry point.
"""
