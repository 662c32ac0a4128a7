"""The house (docs/ARCHITECTURE.md): who may import whom, no import cycles, and every external
name defined once. These walk the source tree with `ast`, so they see every import and every
string literal, including those inside functions."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: part -> parts of the project it may import (docs/ARCHITECTURE.md, "Who may import whom")
MAY_IMPORT = {
    "contract": set(),
    "connectors": {"contract"},
    "streams": {"contract"},
    "gateway": {"contract"},
    "reports": {"contract"},
    "zonewatch": {"contract", "connectors", "streams", "gateway", "reports", "deploy"},
    "deploy": set(),
    "bench": {"contract", "connectors", "streams", "gateway", "reports", "zonewatch", "deploy"},
}
PARTS = tuple(MAY_IMPORT)
SOURCE_PARTS = ("contract", "connectors", "streams", "gateway", "reports", "zonewatch", "deploy", "bench")


def _modules() -> dict[str, Path]:
    out = {}
    for part in SOURCE_PARTS:
        for path in sorted((REPO / part).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """Project modules imported anywhere in the file, `if TYPE_CHECKING:` blocks and function
    bodies included: an import made only for the type checker or only when a function runs is a
    dependency all the same, and a circle through one is still a tangle."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.add(target)
                found.update(f"{target}.{a.name}" for a in child.names)  # `from pkg import module`
            visit(child)

    visit(tree)
    return {m for m in found if m.split(".")[0] in PARTS or m.split(".")[0] == "tests"}


def _resolve(name: str) -> str | None:
    """The project module a dotted import name refers to (longest known prefix)."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in MODULES:
            return cand
        parts.pop()
    return None


GRAPH = {m: {r for n in _imports(m, p) if (r := _resolve(n)) and r != m} for m, p in MODULES.items()}
RAW = {m: _imports(m, p) for m, p in MODULES.items()}


def test_the_tree_has_every_part():
    for part in ("contract", "connectors", "streams", "gateway", "reports", "zonewatch", "deploy"):
        assert any(m.split(".")[0] == part for m in MODULES), part


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_table(module):
    part = module.split(".")[0]
    allowed = MAY_IMPORT[part] | {part}
    bad = sorted(n for n in RAW[module] if n.split(".")[0] not in allowed)
    assert not bad, f"{module} ({part}) imports {bad}; {part} may import only {sorted(allowed)}"


def test_no_import_cycles():
    # Tarjan's strongly connected components over module-level edges
    index, low, on, stack, cycles, counter = {}, {}, set(), [], [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            # a package importing its own submodules is not a cycle a reader trips over
            if len(comp) > 1 and not all(c.startswith(min(comp, key=len) + ".") or c == min(comp, key=len)
                                         for c in comp):
                cycles.append(sorted(comp))

    import sys
    sys.setrecursionlimit(10_000)
    for v in list(GRAPH):
        if v not in index:
            strong(v)
    assert not cycles, f"import cycles: {cycles}"


# --- external names defined once ---------------------------------------------------------------

def _contract_strings(module: str) -> dict[str, str]:
    """Module-level NAME = "literal" (and f-strings over PREFIX) of a contract module, evaluated."""
    import importlib

    mod = importlib.import_module(module)
    return {k: v for k, v in vars(mod).items() if k.isupper() and isinstance(v, str)}


def _names():
    from contract import keys, topics

    redis = {v for k, v in _contract_strings("contract.keys").items() if v.startswith(keys.PREFIX)}
    redis.add(keys.zone(""))
    topic_names = set(topics.INPUT_TOPICS) | set(topics.OUTPUT_TOPICS) | {topics.ZONE_EVENTS_SUFFIX}
    return redis, topic_names


def _literals(path: Path):
    """String constants of a file that are not docstrings, with their line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_each_redis_key_and_topic_name_is_defined_once_in_the_contract():
    from contract import keys, topics

    redis, topic_names = _names()
    # a second definition inside the contract: two constants with the same value
    for module in ("contract.keys", "contract.topics"):
        values = [v for k, v in _contract_strings(module).items()
                  if v in redis or v in topic_names]
        dup = {v for v in values if values.count(v) > 1}
        assert not dup, f"{module} defines {sorted(dup)} more than once"
    assert keys.PREFIX == "zw:" and topics.CALLS == "calls.110"  # the oracle: CONTRACT §1, §3
    offenders = []
    for module, path in MODULES.items():
        if module.split(".")[0] == "contract":
            continue
        for line, s in _literals(path):
            if s.startswith(keys.PREFIX) or s in topic_names or any(
                    s.startswith(t) and not s[len(t):len(t) + 1].isalnum() for t in topic_names if len(s) > len(t)):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {s!r}")
    assert not offenders, "Redis key or topic name literals outside contract/:\n" + "\n".join(offenders)


def test_every_error_has_the_one_root():
    import inspect

    from contract import errors

    classes = [c for _n, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) > 5
    for cls in classes:
        assert issubclass(cls, errors.ZonewatchError), cls
    # and no error class is defined outside the contract
    stray = []
    for module, path in MODULES.items():
        if module.startswith("contract") or module.startswith("deploy"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and (b.id.endswith("Error") or b.id == "Exception") for b in node.bases):
                stray.append(f"{path.relative_to(REPO)}: {node.name}")
    assert not stray, f"error classes outside contract/errors.py: {stray}"


@pytest.mark.parametrize("package", ["streams", "gateway"])
def test_the_packages_module_map_names_every_module(package):
    """streams/__init__.py and gateway/__init__.py are a one-line map of every module: a new module
    goes on the map."""
    doc = importlib.import_module(package).__doc__ or ""
    listed = set(re.findall(r"^\s{4}(\w+\.py)\s", doc, flags=re.M))
    modules = {p.name for p in (REPO / package).glob("*.py") if p.name != "__init__.py"}
    assert modules - listed == set(), f"{package}/__init__.py does not map {sorted(modules - listed)}"
