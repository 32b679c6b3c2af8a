"""Requests answered across a Ray cluster: the one mechanism behind every stage's `--backend ray`.

The driver (the process the user started) turns its numbered requests into rows of a Ray
Dataset, one round at a time; engine actors on the workers answer them (OpenAI-compatible
endpoints through `core.openai_client`, or vLLM through `ray.data.llm`) and the rows stream
back in request order as `GenerationResult`s. Journaling, spending caps and the order of use
stay with the caller, on the driver, exactly as for the other backends. Ray itself is an
optional dependency (`pip install '.[ray]'`), imported only when a run asks for it.
"""
