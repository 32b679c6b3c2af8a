"""`python -m assess.chat`: talk to a trained checkpoint, answers streamed token by token.

Interactive by default: each line you type is an instruction, answered on its own (the
Alpaca model was trained on single turns, so no history is kept). `/input TEXT` sets an
input for the next instruction (the with-input prompt); `/quit` or Ctrl-D ends. With
`--prompt` it answers that one instruction (and `--input`), prints the answer and exits, for
scripts: only the answer goes to stdout.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from assess.config import CHAT_COMMAND, ChatConfig
from assess.local_model import LocalModel, Sampling, check_model_dir, render_prompt
from core import flags
from core.exit_codes import EXIT_OK, UserError, error_line, interrupt_status

PROG = "assess.chat"
HELP_LINE = "Type an instruction; /input TEXT sets an input for the next one; /quit or Ctrl-D ends."


def answer_once(model: LocalModel, config: ChatConfig, instruction: str, input: str, out: TextIO) -> None:
    """Stream one answer to `out`, ending with a newline."""
    sampling = Sampling(config.max_new_tokens, config.temperature, config.top_p, config.repetition_penalty)
    prompt = render_prompt(model.tokenizer, instruction, input)

    def write(piece: str) -> None:
        out.write(piece)
        out.flush()

    answer = model.stream(prompt, sampling, config.seed, write)
    out.write("\n")
    out.flush()
    if answer.finish_reason == "length":
        print(f"[stopped at --max_new_tokens {config.max_new_tokens}]", file=sys.stderr)


def interactive(model: LocalModel, config: ChatConfig, stdin: TextIO, out: TextIO) -> None:
    """Read instructions until /quit or end of input; answer each as it comes."""
    print(HELP_LINE, file=sys.stderr)
    pending_input = ""
    while True:
        out.write(">>> ")
        out.flush()
        line = stdin.readline()
        if not line:
            out.write("\n")
            return
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return
        if text.startswith("/input"):
            pending_input = text[len("/input"):].strip()
            print(f"[input set for the next instruction: {len(pending_input)} characters]", file=sys.stderr)
            continue
        answer_once(model, config, text, pending_input, out)
        pending_input = ""


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parsed = flags.parse_or_exit_status(CHAT_COMMAND, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    config: ChatConfig = parsed.config
    try:
        model_dir = check_model_dir(config.model, "--model")
        logging.basicConfig(level=config.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
        if config.log_level != "debug" and config.log_level != "info":
            # Deferred on purpose: transformers is heavy, and a bad flag or path above answers at once.
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar between the prompt and the answer
        model = LocalModel(model_dir, config.device)
        if config.prompt:
            answer_once(model, config, config.prompt, config.input, sys.stdout)
        else:
            interactive(model, config, sys.stdin, sys.stdout)
    except UserError as err:
        print(error_line(PROG, err), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        print(file=sys.stderr)
        return interrupt_status(err)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
