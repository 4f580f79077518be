"""The driver's layout (issue #15): no import cycles among the tuner modules (imports inside
functions included), and no long functions in the driver's modules."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DRIVER = ("search", "plan", "planning", "resume", "run", "summary", "ray_compat")
MAX_FUNCTION_LINES = 60


def tuner_imports(path: Path) -> set[str]:
    """The tuner modules a file imports, anywhere in it (module level, inside functions, or
    through `tuner.lazy.lazy("tuner....")`)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("tuner.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "tuner":
                out |= {f"tuner.{a.name}" for a in node.names}
            elif node.module.startswith("tuner."):
                out.add(node.module)
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy" and node.args
              and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("tuner.")):
            out.add(node.args[0].value)  # tuner.lazy: an import on first use is an import too
    return out


def import_graph() -> dict[str, set[str]]:
    modules = {f"tuner.{p.stem}": p for p in (REPO / "tuner").glob("*.py") if p.stem != "__init__"}
    return {m: {d for d in tuner_imports(p) if d in modules and d != m} for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(m, path):
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                found.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, str, int]]:
    out = []
    for name in DRIVER:
        path = REPO / "tuner" / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    out.append((path.name, node.name, length))
    return out


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), list(graph[start])
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def test_no_driver_module_is_on_an_import_cycle():
    """(config, data, owndata and pairs import each other inside functions: not the driver's.)"""
    graph = import_graph()
    on_cycle = [f"tuner.{m}" for m in DRIVER if f"tuner.{m}" in reachable(graph, f"tuner.{m}")]
    assert not on_cycle


def test_no_function_of_the_driver_is_longer_than_60_lines():
    assert not long_functions()


if __name__ == "__main__":  # python tests/test_layout.py: the graph, any cycle, the longest functions
    graph = import_graph()
    for m in sorted(graph):
        if m.split(".")[1] in DRIVER:
            print(f"{m} -> {', '.join(sorted(graph[m])) or '-'}")
    print("driver modules on a cycle:", [m for m in DRIVER if f"tuner.{m}" in reachable(graph, f"tuner.{m}")] or "none")
    print("cycles elsewhere:", cycles(graph) or "none")
    print("longest:", sorted(long_functions(0), key=lambda x: -x[2])[:5])
