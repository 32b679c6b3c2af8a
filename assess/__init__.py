"""The eval stage: talk to a trained checkpoint (`python -m assess.chat`) and measure it
against reference answers with a pairwise LLM judge (`python -m assess`).

Not named `evaluate`: that is a popular PyPI package, and a local package of the same name
would shadow it.
"""
