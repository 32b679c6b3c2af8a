"""The one command-line parser of every stage: a typed dataclass config read from `--flag value` flags.

Every `init` field of a stage's config dataclass is a flag of the same name, documented by its
`metadata["help"]`; a `Command` adds what the dataclass cannot say (the usage line, positional
arguments, groups for `--help`, the check run after parsing). One set of rules for all:

- `--name value` or `--name=value`; a dash may stand for an underscore (`--learning-rate`).
- A value is read by its field's type: `int`; `float` (finite); `bool` (True/False, true/false,
  yes/no, 1/0, t/f, y/n; a bool flag with no value means True); `Literal[...]` (one of the
  choices); `X | None` ("None" or "none" mean None, and so does "" unless X is str);
  `tuple[str, ...]` (comma-separated, or a Python list literal such as `['a', 'b']`); `Path`; `str`.
- A token starting with "--" is never a value (write `--name=--text` for one); "-1" is.
- A repeated flag: the last one wins. Fields without a default are required.
- Arguments that are not flags fill the command's positionals in order; any other is refused.
- `-h`/`--help` anywhere, or `help` first, shows the help page.

Every mistake is a `ConfigError` whose message is one line naming the flag; a CLI prints it
as `prog: error: ...` and exits 2 (`core.exit_codes`).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import math
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from core.exit_codes import EXIT_OK, EXIT_USAGE, ConfigError, UserError, error_line

TRUE_WORDS = ("true", "1", "yes", "t", "y")
FALSE_WORDS = ("false", "0", "no", "f", "n")
NONE_WORDS = ("None", "none")
HELP_WIDTH = 40  # column of the help text after `  --flag METAVAR`


def doc(text: str) -> dict[str, str]:
    """A config field's metadata: `text` is its flag's one line in `--help`.

    `field(default=3, metadata=flags.doc("Seed tasks shown in each prompt."))`
    """
    return {"help": text}


class HelpRequested(Exception):
    """`-h`, `--help` or `help`: the page to print (exit 0)."""

    def __init__(self, text: str) -> None:
        super().__init__("help requested")
        self.text = text


@dataclass(frozen=True)
class Positional:
    """An argument given without a flag; it fills the config field `field`."""

    field: str
    metavar: str
    help: str = ""
    required: bool = True  # met by the argument, or by the field's own flag


@dataclass(frozen=True)
class Group:
    """Flags shown together in `--help`. `values` shows a value (a recipe's) instead of the
    metavar, with the value the flag takes when left out beside it where that differs."""

    title: str
    fields: tuple[str, ...]
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Command:
    """A command line: its config dataclass and what `--help` and the checks need beyond it."""

    prog: str  # the name in error lines: "generate", "generate.dedup", "recover recover", ...
    config: type
    usage: str  # after "usage: "; further lines of the synopsis may follow a newline
    description: str = ""
    positionals: tuple[Positional, ...] = ()
    groups: tuple[Group, ...] = ()  # none: every flag under "flags:"
    epilog: str = ""
    metavars: Mapping[str, str] = field(default_factory=dict)
    show_default: Callable[[str, Any], str | None] | None = None  # a default as --help shows it
    validate: Callable[[Any], Any] | None = None  # run on the config; may return a replacement
    unknown_flag_hint: Callable[[str], str | None] | None = None  # the message for an unknown flag
    help_command: str = ""  # how `--help` is asked for in messages (default: `python -m <prog>`)
    summary: str = ""  # one line, for a CommandGroup's page

    @property
    def see(self) -> str:
        return self.help_command or f"python -m {self.prog}"


@dataclass(frozen=True)
class CommandGroup:
    """Several commands behind one entry point (`python -m recover make_diff|recover ...`)."""

    prog: str
    usage: str
    commands: Mapping[str, Command]
    description: str = ""
    epilog: str = ""


@dataclass(frozen=True)
class Parsed:
    """The checked config, the flags set on the command line, and the command (groups only)."""

    config: Any
    given: frozenset[str]
    command: str | None = None


# --- values -----------------------------------------------------------------------------------

def _optional_inner(kind: Any) -> tuple[bool, Any]:
    """(True, X) for `X | None`, else (False, kind)."""
    if get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(get_args(kind)) == 2:
            return True, args[0]
    return False, kind


def _is_bool(kind: Any) -> bool:
    return _optional_inner(kind)[1] is bool


def convert(name: str, kind: Any, raw: str) -> Any:
    """The value of flag `--name` given as `raw`, read by the field's type `kind`."""
    optional, kind = _optional_inner(kind)
    if optional and (raw in NONE_WORDS or (raw == "" and kind is not str)):
        return None
    if get_origin(kind) is Literal:
        choices = get_args(kind)
        if raw not in choices:
            raise ConfigError(f"--{name} must be one of {', '.join(map(str, choices))} (got {raw!r})")
        return raw
    if kind is bool:
        if raw.lower() in TRUE_WORDS:
            return True
        if raw.lower() in FALSE_WORDS:
            return False
        raise ConfigError(f"--{name} must be True or False (got {raw!r})")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"--{name} must be an integer (got {raw!r})") from None
    if kind is float:
        try:
            number = float(raw)
        except ValueError:
            raise ConfigError(f"--{name} must be a number (got {raw!r})") from None
        if not math.isfinite(number):
            raise ConfigError(f"--{name} must be a finite number (got {raw!r})")
        return number
    if get_origin(kind) is tuple:
        return _as_tuple(name, raw)
    if kind is Path:
        return Path(raw)
    return raw


def _as_tuple(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated items, blanks dropped; a Python list or tuple literal is read as one."""
    text = raw.strip()
    if text[:1] in "[(" and text[-1:] in "])":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ConfigError(f"--{name} must be a comma-separated list (got {raw!r})") from None
        if isinstance(value, (list, tuple)):
            return tuple(item for item in (str(part).strip() for part in value) if item)
    return tuple(item for item in (part.strip() for part in raw.split(",")) if item)


# --- parsing ----------------------------------------------------------------------------------

def _fields(config: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config) if f.init}


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]


def did_you_mean(name: str, known: Sequence[str] | Mapping[str, Any], prefix: str = "") -> str:
    """" did you mean --x?" for the known name closest to a misspelt one ("" when none is close).

    A name that starts a known one (`--num_instruction`) means the shortest it starts; else the
    most similar by difflib's ratio."""
    starting = sorted((k for k in known if k.startswith(name)), key=len)
    close = starting[:1] or difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" did you mean {prefix}{close[0]}?" if close else ""


def wants_help(argv: Sequence[str]) -> bool:
    """`-h` or `--help` anywhere, or `help` as the first argument."""
    return any(arg in ("-h", "--help") for arg in argv) or (bool(argv) and argv[0] == "help")


def parse(command: Command, argv: Sequence[str]) -> Parsed:
    """The checked config from `argv`. Raises ConfigError (one line naming the flag), another
    UserError the config's own checks raise (a path that does not exist), or HelpRequested."""
    argv = list(argv)
    if wants_help(argv):
        raise HelpRequested(help_text(command))
    fields = _fields(command.config)
    hints = typing.get_type_hints(command.config)
    values: dict[str, Any] = {}
    positionals = list(command.positionals)
    from_positionals: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token.startswith("--") and len(token) > 2:
            name, has_value, raw = token[2:].partition("=")
            name = name.replace("-", "_")
            if name not in fields:
                hint = command.unknown_flag_hint(name) if command.unknown_flag_hint else None
                raise ConfigError(hint or f"unknown flag --{name};{did_you_mean(name, fields, '--')} "
                                          f"run `{command.see} --help` for the list of flags")
            if not has_value:
                if i < len(argv) and not argv[i].startswith("--"):
                    raw = argv[i]
                    i += 1
                elif _is_bool(hints[name]):
                    raw = "True"  # `--flag` alone: the switch is on
                else:
                    raise ConfigError(f"--{name} needs a value (see `{command.see} --help`)")
            values[name] = convert(name, hints[name], raw)
        elif positionals:
            slot = positionals.pop(0)
            from_positionals[slot.field] = convert(slot.field, hints[slot.field], token)
        else:
            raise ConfigError(f"unexpected argument {token!r}: every setting is a flag, --name value "
                              f"(see `{command.see} --help`)")
    given = frozenset(values) | frozenset(from_positionals)
    values.update(from_positionals)  # the argument wins over the same setting's flag
    for slot in positionals:
        if slot.required and slot.field not in values:
            raise ConfigError(f"give {slot.metavar}: usage: {command.usage.splitlines()[0]}")
    missing = [name for name, f in fields.items() if _required(f) and name not in values]
    if missing:
        raise ConfigError(f"--{missing[0]} is required (see `{command.see} --help`)")
    config = command.config(**values)
    if command.validate is not None:
        checked = command.validate(config)
        config = config if checked is None else checked
    return Parsed(config, given)


def parse_group(group: CommandGroup, argv: Sequence[str]) -> Parsed:
    """The command named first, then its flags; ConfigError or HelpRequested."""
    argv = list(argv)
    if not argv:
        raise ConfigError(f"give a command: {group_usage(group)}")
    name = argv[0]
    if name in ("-h", "--help", "help"):
        raise HelpRequested(group_help_text(group))
    if name not in group.commands:
        choices = " or ".join(f"`python -m {group.prog} {c} ...`" for c in group.commands)
        raise ConfigError(f"unknown command {name!r};{did_you_mean(name, group.commands)} use {choices}")
    parsed = parse(group.commands[name], argv[1:])
    return Parsed(parsed.config, parsed.given, name)


def parse_or_exit_status(spec: Command | CommandGroup, argv: Sequence[str]) -> Parsed | int:
    """Parse, or print the help page (stdout, 0) or the one-line error (stderr) and return that
    status: 2 for the command line, 1 for a path the config's checks found missing. A group
    given no command prints its page to stderr and returns 2."""
    try:
        if isinstance(spec, CommandGroup):
            if not argv:
                print(group_help_text(spec), end="", file=sys.stderr)
                return EXIT_USAGE
            return parse_group(spec, argv)
        return parse(spec, argv)
    except HelpRequested as shown:
        print(shown.text, end="")
        return EXIT_OK
    except UserError as err:  # a ConfigError (2), or a path the config's own checks found missing (1)
        prog = spec.prog if isinstance(spec, Command) else _group_prog(spec, argv)
        print(error_line(prog, err), file=sys.stderr)
        return err.exit_code


def _group_prog(group: CommandGroup, argv: Sequence[str]) -> str:
    if argv and argv[0] in group.commands:
        return group.commands[argv[0]].prog
    return group.prog


# --- help ---------------------------------------------------------------------------------------

def metavar(command: Command, name: str, kind: Any) -> str:
    """A plain word for the value a flag takes: DIR, FILE, N, X, True|False, the choices, ..."""
    if name in command.metavars:
        return command.metavars[name]
    _, kind = _optional_inner(kind)
    if get_origin(kind) is Literal:
        return "|".join(str(a) for a in get_args(kind))
    if kind is bool:
        return "True|False"
    if kind is int:
        return "N"
    if kind is float:
        return "X"
    if get_origin(kind) is tuple:
        return "A,B,..."
    if name.endswith(("_dir", "_or_path")) or name.startswith("path_"):
        return "DIR"
    if name.endswith(("_path", "_file")):
        return "FILE"
    return "TEXT"


def shown(value: Any) -> str:
    """A value as help pages show it: "not set" for None, "none" for "", lists comma-joined."""
    if value is None:
        return "not set"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, str):
        return "none" if value == "" else repr(value) if " " in value else value
    return str(value)


def _line(head: str, text: str, note: str, indent: int) -> str:
    head = " " * indent + head
    body = f"{text} ({note})" if note else text
    width = HELP_WIDTH + indent - 2
    return f"{head:<{width}} {body}" if len(head) < width else f"{head} {body}"


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _shown_default(command: Command, name: str, value: Any) -> str:
    if command.show_default is not None:
        custom = command.show_default(name, value)
        if custom is not None:
            return custom
    return shown(value)


def _flag_lines(command: Command, indent: int) -> list[str]:
    """The flag list, grouped as the command says (every field exactly once)."""
    fields = _fields(command.config)
    hints = typing.get_type_hints(command.config)
    groups = list(command.groups) or [Group("flags", tuple(fields))]
    listed = {name for group in groups for name in group.fields}
    rest = tuple(name for name in fields if name not in listed)
    if rest:
        groups.append(Group("Other flags", rest))
    positional_fields = {p.field for p in command.positionals}  # documented under "arguments"
    lines: list[str] = []
    for group in groups:
        names = [name for name in group.fields if name in fields and name not in positional_fields]
        if not names:
            continue
        if not (indent > 2 and len(groups) == 1):
            lines += ["", f"{' ' * (indent - 2)}{group.title}:"]
        for name in names:
            f = fields[name]
            default = _default_of(f)
            help_text = f.metadata.get("help", "")
            if name in group.values:
                value = group.values[name]
                head = f"--{name} {value if ' ' not in value else repr(value)}"
                same = shown(default) == value or (_is_number(value) and isinstance(default, (int, float))
                                                   and not isinstance(default, bool) and float(value) == default)
                note = "required" if _required(f) else "" if same else f"left out: {_shown_default(command, name, default)}"
            else:
                head = f"--{name} {metavar(command, name, hints[name])}"
                if _required(f):
                    note = "required"
                elif default is None or default == "":
                    note = ""
                else:
                    note = f"default: {_shown_default(command, name, default)}"
            lines.append(_line(head, help_text, note, indent))
    return lines


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def help_text(command: Command) -> str:
    """The `--help` page of one command."""
    usage = command.usage.splitlines()
    lines = [f"usage: {usage[0]}", *(f"       {more}" for more in usage[1:])]
    if command.description:
        lines += ["", *command.description.splitlines()]
    if command.positionals:
        lines += ["", "arguments:"]
        lines += [_line(p.metavar, p.help, "", 2) for p in command.positionals]
    lines += _flag_lines(command, 2)
    if command.epilog:
        lines += ["", *command.epilog.splitlines()]
    return "\n".join(lines) + "\n"


def group_usage(group: CommandGroup) -> str:
    return f"python -m {group.prog} {'|'.join(group.commands)} --flag VALUE ..."


def group_help_text(group: CommandGroup) -> str:
    """The page of every command of a group: each one's synopsis, summary and flags."""
    lines = [f"usage: {group.usage}"]
    if group.description:
        lines += ["", *group.description.splitlines()]
    for command in group.commands.values():
        lines += ["", command.usage.splitlines()[0]]
        if command.summary:
            lines.append(f"  {command.summary}")
        lines += _flag_lines(command, 4)
    if group.epilog:
        lines += ["", *group.epilog.splitlines()]
    return "\n".join(lines) + "\n"
