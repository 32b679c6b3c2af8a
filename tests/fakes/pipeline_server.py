"""The loopback server a whole recipe runs against: generation and the eval's judge on one port.

    python -m tests.fakes.pipeline_server --port 8765 [--port_file F]

Completions (`/v1/completions`) answer with the server's self-instruct material, so a
`generate` run with `api: completions` keeps items; chat completions go to the deterministic
judge of tests/fakes/eval_judge.py (every verdict `[[A]]` unless an answer carries its
marker). The smoke recipe (recipes/smoke.yaml) generates and judges through it.
"""

from __future__ import annotations

import argparse

from tests.fakes.eval_judge import JudgeRoute
from tests.fakes.openai_server import OpenAIServer, add_server_arguments, options_from_args, serve_until_signalled


def pipeline_server(server: OpenAIServer) -> OpenAIServer:
    """`server` with the judge on its chat route (completions keep the generation material)."""
    JudgeRoute(server)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    server = pipeline_server(OpenAIServer(options_from_args(args), port=args.port))
    serve_until_signalled(server, args.port_file, "(generation on /v1/completions, the judge on chat)")


if __name__ == "__main__":
    main()
