"""Command line: `python -m recover make_diff ...` and `python -m recover recover ...` (via fire).

Each command's flags are exactly the fields of its config dataclass; this module only parses
them, calls the library and turns its errors into one-line messages.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import logging
import sys
import textwrap
from collections.abc import Callable
from dataclasses import MISSING
from typing import Any

from recover.config import MakeDiffConfig, RecoverConfig, flag_fields
from recover.errors import ConfigError, RecoverError

logger = logging.getLogger(__name__)


def field_docs(config_cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal under it in the class body), for `--help`."""
    body = ast.parse(textwrap.dedent(inspect.getsource(config_cls))).body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in itertools.pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant) and isinstance(following.value.value, str)):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _help(config_cls: type) -> str:
    docs = field_docs(config_cls)
    lines = [f"    {f.name}: {docs.get(f.name, '')}" for f in flag_fields(config_cls)]
    return (config_cls.__doc__ or "") + "\n\nArgs:\n" + "\n".join(lines)


def _command(config_cls: type, run: Callable[[Any], Any], doc: str) -> Callable[..., None]:
    """A fire command whose flags are `config_cls`'s fields (unknown flags are refused by fire)."""

    def command(**flags: Any) -> None:
        run(config_cls(**flags))

    params = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                          default=f.default if f.default is not MISSING else None, annotation=f.type)
        for f in flag_fields(config_cls)
    ]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc
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


COMMANDS = {
    "make_diff": _command(MakeDiffConfig, _make_diff, _help(MakeDiffConfig)),
    "recover": _command(RecoverConfig, _recover, _help(RecoverConfig)),
}


_CONFIGS = {"make_diff": MakeDiffConfig, "recover": RecoverConfig}


def check_flags(argv: list[str]) -> None:
    """Refuse unknown `--flags` before anything runs (fire would only complain after the command ran)."""
    if not argv or argv[0] not in _CONFIGS or "--" in argv:
        return
    known = {f.name for f in flag_fields(_CONFIGS[argv[0]])}
    for token in argv[1:]:
        if token.startswith("--") and token not in ("--help",):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            if name not in known:
                raise ConfigError(f"unknown flag {token.split('=', 1)[0]} for {argv[0]}; its flags are --{', --'.join(sorted(known))}")


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
