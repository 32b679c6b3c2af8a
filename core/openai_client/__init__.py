"""The OpenAI-compatible client every stage calls through: generation, rating and the eval judge.

- `request`: what a call asks and what comes back (requests, completions, results) and the
  one fatal error type, `GenerationError`;
- `credentials`: OPENAI_API_KEY / OPENAI_BASE_URL, an empty value counted as unset;
- `client`: many calls in flight through the official SDK, paced by the server's rate limit
  (`pacing`), retried by the SDK, fatal failures turned into one line (`failures`);
- `journal`: every answer fsync'd before it is used, so a killed run resumes and never pays twice;
- `cost`: token counts (tiktoken, offline) and the price table;
- `budget`: the one spending cap rule.
"""
