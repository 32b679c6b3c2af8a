"""What the export cannot do with a checkpoint: one line naming the family, tensor, tokenizer or file."""

from __future__ import annotations

from core.exit_codes import InputError


class ExportError(InputError):
    """A checkpoint this exporter cannot write as GGUF (an unsupported family, tokenizer or tensor,
    values beyond the chosen encoding's range) or an output in the way; the message says what
    to do instead. Exit status 1: the model pointed at is the problem, not the flags."""
