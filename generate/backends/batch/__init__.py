"""The OpenAI Batch API as a generate backend (`--backend batch`); `backend.BatchBackend` is the entry."""
