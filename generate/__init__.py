"""Self-instruct data generation through an OpenAI-compatible API (`python -m generate`)."""
