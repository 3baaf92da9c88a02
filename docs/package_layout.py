"""Measure the package's layout: the numbers of docs/internals.md's "Package layout".

    python docs/package_layout.py [ROOT]        # ROOT: a checkout (default: this one)
    python docs/package_layout.py ROOT --walk scene-reuse   # one option, command line to use

prints, as markdown, the lines per subpackage of `qgmrn/` (and of `studies/`), the largest
modules and functions, and the import graph between the subpackages (an edge A -> B: some
module of A imports one of B; a cycle between two modules is named). Lines are every line of
the `.py` files (blank lines and docstrings included), as `wc -l` counts them. Run it on an
older checkout (`git worktree add /tmp/old REV`) for the numbers before a change.

`--walk OPTION` lists instead every line of `qgmrn/` whose code (not its comments or docstrings)
names the option (`"--scene-reuse"`) or an identifier that contains its words (`scene_reuse`,
`stream_scene_reuse`): the path of one knob from the command line to the code that uses it.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGES = ("qgmrn", "studies")


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages under `root`."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def node_of(name: str, mods: dict[str, Path]) -> str:
    """`name`'s node in the layout: its subpackage (`qgmrn.engine`; a folder of scripts counts
    too), or, for a module at a package's root, the module itself (`qgmrn.config`)."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The modules of the packages that `name` imports (at any depth of its code)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                package = name.split(".")
                if path.name != "__init__.py":
                    package = package[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def functions(path: Path) -> list[tuple[int, str]]:
    """(lines, qualified name) of every function and method of the file."""
    out = []

    def visit(node, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((child.end_lineno - child.lineno + 1, f"{prefix}{child.name}"))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(path.read_text()), "")
    return out


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of a directed graph (Tarjan's algorithm)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on.discard(w)
                component.add(w)
                if w == v:
                    break
            found.append(component)

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def report(root: Path, top: int = 8) -> str:
    mods = modules(root)
    size = {name: lines(path) for name, path in mods.items()}
    out = [f"# Package layout of {root}", ""]
    for package in PACKAGES:
        names = [n for n in mods if n.split(".")[0] == package]
        if not names:
            continue
        per = defaultdict(lambda: [0, 0])
        for n in names:
            key = node_of(n, mods)
            if key == package or (mods[n].parent == root / package):
                key = f"{package} (root modules)"
            per[key][0] += 1
            per[key][1] += size[n]
        total = sum(size[n] for n in names)
        out += [f"## {package}: {len(names)} modules, {total:,} lines", ""]
        out += ["| part | modules | lines | share |", "| --- | ---: | ---: | ---: |"]
        for key, (count, n) in sorted(per.items(), key=lambda kv: -kv[1][1]):
            out.append(f"| {key} | {count} | {n:,} | {100 * n / total:.0f}% |")
        out.append("")
    qgmrn = [n for n in mods if n.split(".")[0] == "qgmrn"]
    root_modules = sorted(n for n in qgmrn if n.count(".") == 1 and mods[n].name != "__init__.py")
    out += [f"Modules at the root of qgmrn/: {len(root_modules)} "
            f"({', '.join(n.split('.')[1] for n in root_modules)})", ""]  # fmt: skip
    out += ["## Largest modules", "", "| module | lines |", "| --- | ---: |"]
    for n in sorted(mods, key=lambda n: -size[n])[:top]:
        out.append(f"| {mods[n].relative_to(root)} | {size[n]:,} |")
    out += ["", "## Largest functions", "", "| function | lines |", "| --- | ---: |"]
    funcs = [(k, f"{mods[n].relative_to(root)}: {f}") for n in mods for k, f in functions(mods[n])]
    for k, f in sorted(funcs, key=lambda t: -t[0])[:top]:
        out.append(f"| {f} | {k} |")
    defs = {n: len(functions(mods[n])) for n in mods}
    busiest = sorted(mods, key=lambda n: -defs[n])[:3]
    out += ["", "Most definitions in one module: " + ", ".join(
        f"{mods[n].relative_to(root)} {defs[n]}" for n in busiest) + ".", ""]  # fmt: skip
    graph = {n: imports(n, p, mods) for n, p in mods.items()}
    edges = defaultdict(set)
    for n, targets in graph.items():
        for t in targets:
            a, b = node_of(n, mods), node_of(t, mods)
            if a != b:
                edges[a].add(b)
    out += ["## Import graph (subpackage or root module -> what it imports)", "", "```"]
    for a in sorted(edges):
        out.append(f"{a} -> {', '.join(sorted(edges[a]))}")
    out += ["```", ""]
    cycles = sorted(
        f"{a} <-> {b}" for a, targets in graph.items() for b in targets if a < b and a in graph[b]
    )
    out.append("Import cycles between two modules: " + (", ".join(cycles) or "none") + ".")
    loops = [" <-> ".join(sorted(c)) for c in strongly_connected(edges) if len(c) > 1]
    out.append("Cycles in the graph above: " + ("; ".join(loops) or "none") + ".")
    return "\n".join(out) + "\n"


def walk(root: Path, option: str) -> str:
    """The lines of `qgmrn/` whose code names `option` or an identifier holding its words."""
    words = option.lstrip("-").replace("-", "_")
    out = [f"# `--{option.lstrip('-')}` in {root}/qgmrn", ""]
    for path in sorted((root / "qgmrn").rglob("*.py")):
        source = path.read_text().splitlines()
        found = set()
        for node in ast.walk(ast.parse("\n".join(source))):
            names = []
            if isinstance(node, ast.Name):
                names = [node.id]
            elif isinstance(node, ast.Attribute):
                names = [node.attr]
            elif isinstance(node, ast.keyword | ast.arg):
                names = [node.arg or ""]
            elif isinstance(node, ast.Constant) and node.value == f"--{option.lstrip('-')}":
                names = [words]
            if any(words in n for n in names):
                found.add(node.lineno)
        for line in sorted(found):
            out.append(f"{path.relative_to(root)}:{line}: {source[line - 1].strip()}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--walk" in args:
        i = args.index("--walk")
        option = args.pop(i + 1)
        args.pop(i)
        print(walk(Path(args[0] if args else Path(__file__).parents[1]), option))
    else:
        print(report(Path(args[0] if args else Path(__file__).parents[1])))
