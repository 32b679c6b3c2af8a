"""Fakes shared by the tests, `make smoke` and the benchmarks: real HTTP on 127.0.0.1, no network.

- `openai_server`: a loopback server speaking the OpenAI protocol, with injectable faults
  (`python -m tests.fakes.openai_server` from a shell); `material`: what it answers with;
- `batch_routes`: the Batch API's /v1/files and /v1/batches on that server;
- `rating_judge`: a deterministic judge for `python -m generate.rate`;
- `eval_judge`: a deterministic pairwise judge for `python -m assess`;
- `preference_judge`: a judge with known preferences (the longer answer, or logprobs) and an
  API contestant, for the length-controlled and weighted win rates;
- `browser`: headless Chromium through Selenium, for page tests.
"""
