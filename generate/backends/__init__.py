"""Where completions come from: an OpenAI-compatible API, the Batch API, or a local model."""
