"""`python -m train ...` (also under torchrun): see train/cli.py."""

import logging
import os
import sys

from train.cli import main

if __name__ == "__main__":
    status = main()
    # Why os._exit: after the last collective, gloo's worker threads may still be releasing its
    # tensors (which needs the GIL) while the interpreter finalizes; such a thread is then torn
    # down inside a C++ destructor and the process aborts ("terminate called without an active
    # exception"), failing a run whose files are all written. Seen in about 1 of 15 two-process
    # CPU runs with `offload` (torch 2.13). Every output file is closed by now: flush the
    # streams and leave without the finalization.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
