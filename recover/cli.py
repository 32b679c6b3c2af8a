"""Command line: `python -m recover make_diff ...` and `python -m recover recover ...` (via fire).

Each command's flags are exactly the fields of its config dataclass; this module only parses
them, calls the library and turns its errors into one-line messages.
"""

from __future__ import annotations

import inspect
import logging
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


def main(argv: list[str] | None = None) -> int:
    """Run one command; a `RecoverError` becomes `error: <message>` on stderr and exit status 1."""
    import fire

    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        check_flags(argv)
        fire.Fire(COMMANDS, command=argv, name="python -m recover")
    except RecoverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
