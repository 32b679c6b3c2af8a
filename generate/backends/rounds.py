"""How many requests the next round asks for, for backends that send requests in rounds (the
Batch API, a Ray cluster): as many as the remaining target needs at the yield seen so far.

Before any answer is in, the yield is a guess (half of the prompt's numbered slots per
prompt): deliberately high, so the first round errs small, costs little, and later rounds are
sized from the yield actually observed.
"""

from __future__ import annotations

import math

from generate.config import GenerateConfig

PROMPT_SLOTS = 20  # the prompt asks for 20 tasks; the stop sequences end the list before "20"
PRIOR_KEPT_PER_SLOT = 0.5  # the first round's guess of the kept fraction of numbered slots


def round_size(config: GenerateConfig, kept: int, gained: int, answered: int) -> int:
    """Requests for the next round: `kept` items so far, `gained` of them from the last round's
    `answered` requests."""
    needed = max(config.num_instructions_to_generate - kept, 1)
    if answered and gained > 0:
        per_request = gained / answered
    else:
        slots = max(PROMPT_SLOTS - 1 - config.num_prompt_instructions, 1)
        per_request = PRIOR_KEPT_PER_SLOT * slots * config.request_batch_size
    return max(1, math.ceil(needed / per_request))
