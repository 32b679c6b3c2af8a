"""`python -m tests.check_layout [ROOT]`: the arrows of the architecture, checked on the code itself.

The rules (docs/architecture.md):

1. A stage (`generate`, `train`, `recover`, `assess`, `export`, and `recipe`, which runs the
   others as commands) imports the foundation (`core`) and its own modules, never another stage.
2. The foundation imports no stage.
3. No two modules import each other, directly or through others (an import circle).
4. One flag parser (`core.flags`): no module imports argparse, fire or HfArgumentParser.

Every module of these packages is read with `ast` (nothing is imported or run); every
`import` counts, at the top of a module or inside a function, absolute or relative. `from
pkg import name` counts as an import of `pkg.name` when that is a module, else of `pkg`.
Imports under `if TYPE_CHECKING:` never run: they count for rules 1 and 2, not for circles.
Exit status 0 when the layout holds, 1 with one line per violation otherwise.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

FOUNDATION = "core"
OTHER_PARSERS = ("argparse", "fire", "transformers.HfArgumentParser")
STAGES = ("generate", "train", "recover", "assess", "export", "recipe")
PACKAGES = (FOUNDATION, *STAGES)


@dataclass(frozen=True)
class Edge:
    """`source` imports `target` at `line` (`typing_only`: under `if TYPE_CHECKING:`)."""

    source: str
    target: str
    line: int
    typing_only: bool = False


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the checked packages under `root`: dotted name -> file."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        base = root / package
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import node, with whether it sits under `if TYPE_CHECKING:`."""
    out: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append((node, typing_only))
        for child in ast.iter_child_nodes(node):
            inside = typing_only or (isinstance(node, ast.If) and _is_type_checking(node) and child in node.body)
            visit(child, inside)

    visit(tree, False)
    return out


def _package_of(module: str, path: Path) -> str:
    """The package a relative import in `module` starts from."""
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def other_parsers(module: str, path: Path) -> list[str]:
    """Rule 4: imports of another flag parser than `core.flags`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node, _ in _imports(tree):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names])
        for name in names:
            if name in OTHER_PARSERS:
                found.append(f"{module} imports {name} (line {node.lineno}): every command line goes through "
                             f"{FOUNDATION}.flags")
    return found


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    """What `module` imports among `modules` (anything else, the standard library included, is left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    edges: list[Edge] = []
    for node, typing_only in _imports(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = _package_of(module, path).split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.append(submodule if submodule in modules else base)
        for target in targets:
            # `import a.b.c` names a.b.c; an unknown tail (an attribute) falls back to its module.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != module:
                edges.append(Edge(module, target, node.lineno, typing_only))
    return edges


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def layering_violations(edges: list[Edge]) -> list[str]:
    """Rules 1 and 2, one line per offending import."""
    lines = []
    for edge in edges:
        source, target = _top(edge.source), _top(edge.target)
        if source == FOUNDATION and target in STAGES:
            lines.append(f"{edge.source} imports {edge.target} (line {edge.line}): the foundation imports no stage")
        elif source in STAGES and target in STAGES and source != target:
            lines.append(f"{edge.source} imports {edge.target} (line {edge.line}): a stage imports another stage; "
                         f"move the shared piece into {FOUNDATION}/, or hand it over through a file")
    return lines


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The import circles: one cycle (a list of modules, first repeated last) per strongly
    connected group of modules that import each other (Tarjan's algorithm)."""
    graph: dict[str, list[str]] = {}
    for edge in edges:
        if not edge.typing_only:
            graph.setdefault(edge.source, []).append(edge.target)
            graph.setdefault(edge.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(set(graph[start]))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(set(graph[child])))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return [_one_cycle(group, graph) for group in groups]


def _one_cycle(group: list[str], graph: dict[str, list[str]]) -> list[str]:
    """A shortest circle through the group's first module, for the message."""
    members = set(group)
    start = group[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(set(graph[node])):
            if child == start:
                return paths[node] + [start]
            if child in members and child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    return group + [start]


def check(root: Path) -> list[str]:
    """Every violation of the rules under `root`, one line each (empty: the layout holds)."""
    modules = module_names(root)
    edges = [edge for module, path in modules.items() for edge in imports_of(module, path, modules)]
    lines = layering_violations(edges)
    lines += [f"import circle: {' -> '.join(cycle)}" for cycle in cycles(edges)]
    lines += [line for module, path in modules.items() for line in other_parsers(module, path)]
    return lines


def import_graph(root: Path) -> dict[str, set[str]]:
    """Package -> the packages it imports (runtime imports), for docs and reports."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {package: set() for package in PACKAGES if (root / package).is_dir()}
    for module, path in modules.items():
        for edge in imports_of(module, path, modules):
            if _top(edge.target) != _top(module):
                graph[_top(module)].add(_top(edge.target))
    return graph


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    problems = check(root)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 1
    graph = import_graph(root)
    print("layout ok: " + "; ".join(f"{package} -> {', '.join(sorted(deps)) or 'nothing'}"
                                    for package, deps in graph.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
