"""The foundation every stage builds on; it imports no stage.

What more than one stage needs lives here, each module named for what it does: the one flag
parser (`core.flags`) and the exit statuses (`core.exit_codes`), file handling
(`core.files`, `core.records`), the Alpaca prompt format and chat template
(`core.prompt_format`), secret scrubbing (`core.redact`), the OpenAI-compatible client with
its pacing, journal, cost and spend budget (`core.openai_client`), and streaming checkpoint
I/O with the LoRA adapter merge (`core.checkpoints`). Nothing is imported here, and no module
outside `core.checkpoints` imports torch: the generate stage installs without it.
"""
