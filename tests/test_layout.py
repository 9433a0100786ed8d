"""The package's floors: every import (function-local ones too) points down, or stays in its own folder, and no
modules import each other; the README's layout table names every module."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mcq_unsloth"

# The README's floors, bottom first. A module's floor is its folder's, or its own for a top-level module.
FLOORS = [
    {"errors", "outputs", "resources", "processes", "records"},                    # records and errors
    {"data", "prompts", "extraction", "rewards", "model", "plots", "cards", "launcher"},  # questions, models
    {"config"},                                                                        # the recipe
    {"inference"},                                                                     # answering
    {"training", "convert"},                                                           # the stages built on it
    {"benchmarks", "api", "demo"},                                                      # workflows
    {"__init__"},                                                                      # the public names
    {"ui"},                                                                            # the page
    {"cli"},                                                                           # the command line
    {"__main__"},                                                                      # python -m mcq_unsloth
]
SHARED = {0, 1}  # floors whose folders and modules may import one another (one way: the cycle check)


def _floor(module: str) -> tuple[int, str]:
    part = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(FLOORS) if part in names), part


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{alias.name}" for alias in node.names]
            out |= {name if name in modules else target for name in names}
        elif isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
    return {name for name in out if name.split(".")[0] == "mcq_unsloth" and name != module}


def test_every_module_has_a_floor():
    for module in _modules():
        _floor(module)  # StopIteration names a module the floors do not place


def test_imports_point_down_or_stay_in_their_folder():
    modules = _modules()
    wrong = []
    for module, path in sorted(modules.items()):
        floor, folder = _floor(module)
        for target in sorted(_imports(module, path, modules)):
            to_floor, to_folder = _floor(target)
            if to_floor > floor or (to_floor == floor and to_folder != folder and floor not in SHARED):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_no_two_modules_import_each_other_even_through_others():
    modules = _modules()
    graph = {m: _imports(m, p, modules) & set(modules) for m, p in modules.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # the package root re-exports the API, and a package's __init__ is imported with each of its modules
    cycles = [c for c in cycles if not c.startswith("mcq_unsloth -> ") and " -> mcq_unsloth ->" not in c]
    assert not cycles, "\n".join(cycles)


def test_the_readmes_layout_names_every_module():
    text = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    layout = text[text.index("\n## Layout"):text.index("\n## ", text.index("\n## Layout") + 1)]
    named = set(re.findall(r"`([\w/.]+?)(?:\.py)?`", layout))
    missing = []
    for module, path in _modules().items():
        if path.name == "__init__.py":
            continue
        leaf = path.stem
        if leaf not in named and f"mcq_unsloth/{leaf}" not in named:
            missing.append(module)
    assert not missing, f"modules the README's layout does not name: {missing}"


def test_a_function_imports_our_modules_only_with_the_reason_said():
    """The graph is read at the top of each module; a function-local import of one of ours hides an edge, so
    it must say why (a heavy library that module loads, or an order that matters) in a comment just above."""
    unexplained = []
    for module, path in sorted(_modules().items()):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                ours = isinstance(inner, ast.ImportFrom) and (inner.level or (inner.module or "").startswith(
                    "mcq_unsloth")) or isinstance(inner, ast.Import) and any(
                    a.name.startswith("mcq_unsloth") for a in inner.names)
                if ours and not lines[inner.lineno - 2].strip().startswith("#"):
                    unexplained.append(f"{module}:{inner.lineno}: {lines[inner.lineno - 1].strip()}")
    assert not unexplained, "function-local imports of our modules without a comment saying why:\n" + "\n".join(
        unexplained)


def test_the_tests_page_names_every_test_file():
    page = (PACKAGE.parent / "docs" / "tests.md").read_text(encoding="utf-8")
    files = sorted(p.name for p in (PACKAGE.parent / "tests").glob("test_*.py"))
    assert [name for name in files if f"`{name}`" not in page] == []
