"""`python -m train ...` (also under torchrun): see train/cli.py."""

import sys

from train.cli import main

sys.exit(main())
