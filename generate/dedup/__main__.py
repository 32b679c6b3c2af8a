"""`python -m generate.dedup`: keep/drop flags for a JSONL stream of instructions (generate/dedup/cli.py)."""

import sys

from generate.dedup.cli import main

if __name__ == "__main__":
    sys.exit(main())
