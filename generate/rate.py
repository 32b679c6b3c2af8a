"""`python -m generate.rate --data FILE --min_score X`: an LLM judge rates each example, 1-5.

The public entry point (a contract other tools rely on); the code is in `generate.quality.rate`.
"""

import sys

from generate.quality.rate import main

if __name__ == "__main__":
    sys.exit(main())
