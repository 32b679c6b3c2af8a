"""Command line: `python -m recover make_diff ...` and `python -m recover recover ...` (via fire).

Each command's flags are exactly the fields of its config dataclass; this module only parses
them, calls the library and turns its errors into one-line messages. `--help` is
`recover.usage`'s page, not fire's. SIGTERM is handled like Ctrl-C: the half-written output
is removed (`recover.output_dir`) and one line says so.
"""

from __future__ import annotations

import inspect
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import MISSING
from typing import Any

from recover.config import MakeDiffConfig, RecoverConfig, flag_fields
from recover.errors import ConfigError, RecoverError


def _help(config_cls: type) -> str:
    """The command's `--help` text: the config's docstring and each flag's `metadata["help"]`."""
    lines = [f"    {f.name}: {f.metadata.get('help', '')}" for f in flag_fields(config_cls)]
    return (config_cls.__doc__ or "") + "\n\nArgs:\n" + "\n".join(lines)


def _command(config_cls: type, run: Callable[[Any], Any]) -> Callable[..., None]:
    """A fire command whose flags are `config_cls`'s fields, documented for `--help`."""

    def command(**flags: Any) -> None:
        run(config_cls(**flags))

    params = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                          default=f.default if f.default is not MISSING else None, annotation=f.type)
        for f in flag_fields(config_cls)
    ]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = _help(config_cls)
    command.__name__ = config_cls.__name__
    return command


def _make_diff(config: MakeDiffConfig) -> None:
    from recover.build_diff import make_diff

    make_diff(config)


def _recover(config: RecoverConfig) -> None:
    from recover.apply_diff import recover

    result = recover(config)
    if result.inference is not None:
        print(result.inference.prompt + result.inference.response)


_CONFIGS: dict[str, type] = {"make_diff": MakeDiffConfig, "recover": RecoverConfig}
COMMANDS = {"make_diff": _command(MakeDiffConfig, _make_diff), "recover": _command(RecoverConfig, _recover)}


def check_flags(argv: list[str]) -> None:
    """Refuse an unknown command, a positional argument or an unknown `--flag` before anything runs.

    fire would accept a positional value for the first flag and report unknown flags only
    after the command ran; an early one-line message is clearer.
    """
    if not argv or argv[0] in ("-h", "--help") or "--" in argv:
        return
    if argv[0] not in _CONFIGS:
        raise ConfigError(f"unknown command {argv[0]!r}; use `python -m recover make_diff ...` or `python -m recover recover ...`")
    known = {f.name for f in flag_fields(_CONFIGS[argv[0]])}
    expects_value = False
    for token in argv[1:]:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            if name != "help" and name not in known:
                raise ConfigError(f"unknown flag {token.split('=', 1)[0]} for {argv[0]}; its flags are --{', --'.join(sorted(known))}")
            expects_value = "=" not in token
        elif expects_value:
            expects_value = False  # the previous flag's value (it may look like -1)
        elif token.startswith("-"):
            expects_value = "=" not in token  # a short flag fire derives (-t); fire checks its name
        else:
            raise ConfigError(f"unexpected argument {token!r} for {argv[0]}: every value follows its flag, e.g. --path_raw DIR")


class Terminated(BaseException):
    """Raised in the main thread when SIGTERM arrives, so that cleanup runs as for Ctrl-C."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run one command; a `RecoverError` becomes `error: <message>` on stderr and exit status 1.

    No command prints the usage to stderr (exit 2); `--help` prints it to stdout (exit 0).
    Ctrl-C exits 130 and SIGTERM 143, each with one line, the partial output removed.
    """
    from recover.usage import COMMANDS as _NAMES, usage_text

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage_text(), end="", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] in _NAMES and any(a in ("-h", "--help") for a in argv[1:]):
        print(usage_text(argv[0]), end="")
        return 0
    import fire

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        check_flags(argv)
        fire.Fire(COMMANDS, command=argv, name="python -m recover")
    except RecoverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as exc:
        name = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
        print(f"error: interrupted by {name}; the partial output was removed, nothing was written", file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
