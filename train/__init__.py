"""Supervised fine-tuning of a causal LM on Alpaca-format data (`python -m train`)."""
