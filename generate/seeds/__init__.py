"""The seed tasks and the prompt: reading them, the language they are written in, checking them.

- `tasks`: seed tasks and the prompt file read, and each request's prompts built from (seed, index);
- `language`: the seeds' language detected from their script, and the settings it gives a run;
- `check` (`python -m generate.check_seeds`): every check a run makes on the seeds, before paying.
"""
