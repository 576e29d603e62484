"""The layout's import rules: the pure parts import nothing that does I/O.

Each rule is what the package's ``__init__`` docstring promises; ``docs/architecture.md``
draws it. Imports inside functions count too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "streamproc"

PURE = {
    "streamproc.engine",
    "streamproc.rows",
    "streamproc.columns",
    "streamproc.anomaly",
    "streamproc.merge",
}
"""The engine and what it needs: deterministic, no clocks but the records', no I/O."""

RULES: dict[str, tuple[set[str], set[str]]] = {
    # package or module: (streamproc parts it may import, third-party modules it may import)
    # streamproc_core: the compiled engine core (core/), pure like the engine it is part of;
    # backports (.zstd): the snapshots' codec, bytes in and bytes out
    "streamproc.engine": (PURE, {"msgspec", "orjson", "streamproc_core", "backports"}),
    "streamproc.anomaly": (PURE, {"msgspec", "orjson"}),
    "streamproc.merge": (PURE, set()),
    "streamproc.rows": (PURE, set()),
    # the one declaration of columns: imported by the engine, so pure and stdlib only
    "streamproc.columns": (set(), set()),
    "streamproc.runtime": (PURE | {"streamproc.runtime"}, set()),
    # the exporter sees the engine only through its output: rows and EngineStats
    "streamproc.prometheus": (
        {
            "streamproc.prometheus",
            "streamproc.columns",
            "streamproc.rows",
            "streamproc.derived",
            "streamproc.anomaly",
            "streamproc.engine.config",
            "streamproc.engine.validate",
            "streamproc.engine.stats",
            "streamproc.sink.retry",
        },
        {"prometheus_client"},
    ),
    # storage adapters: the column declaration, the rows, the SQL guard for reads
    "streamproc.sink": (
        {"streamproc.sink", "streamproc.columns", "streamproc.rows", "streamproc.sql.guard"},
        {"numpy", "orjson", "pyarrow", "chdb", "clickhouse_connect"},
    ),
    # configuration: the engine's defaults, nothing that does I/O
    "streamproc.settings": (PURE, set()),
    # tools and adapters (docs/architecture.md)
    "streamproc.simulate": (PURE | {"streamproc.simulate"}, {"orjson"}),
    "streamproc.sql": (
        {
            "streamproc.sql",
            "streamproc.auth",
            "streamproc.httplog",
            "streamproc.settings",
            "streamproc.sink",
            "streamproc.cli",  # ``streamproc sql``'s flags are the command line's
        },
        {"orjson", "aiohttp"},
    ),
    "streamproc.check": (
        {
            "streamproc.check",
            "streamproc.settings",
            "streamproc.kafka",
            "streamproc.sink",
            "streamproc.broker",
        },
        {"aiokafka"},
    ),
    # Kafka adapters: the runtime's ports, the outputs' columns, the connection settings
    "streamproc.kafka": (
        PURE | {"streamproc.kafka", "streamproc.runtime", "streamproc.settings"},
        {"aiokafka", "faust", "orjson"},
    ),
    # users' and tests' tools drive the product: any part of it, never agents/
    "streamproc.tools": (
        {"streamproc"},
        {"aiokafka", "orjson", "rich"},
    ),
}

TOOLS = "streamproc.tools"
COMMAND_LINE = {"streamproc.cli", "streamproc.commands"}
"""The only modules of the product that may import the tools (``streamproc demo``, …)."""


def _modules(name: str) -> list[Path]:
    path = ROOT / Path(*name.split("."))
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def _imports(path: Path, package: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            if (ROOT / Path(*mod.split("."))).is_dir():
                # ``from streamproc import auth``: the modules named, not the whole package
                out.update(f"{mod}.{a.name}" for a in node.names)
            else:
                out.add(mod)
    return out


def _package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts)
    return ".".join(parts[:-1])


@pytest.mark.parametrize("name", sorted(RULES))
def test_import_rules(name: str) -> None:
    ours, third_party = RULES[name]
    wrong = []
    for path in _modules(name):
        for mod in _imports(path, _package_of(path)):
            top = mod.split(".")[0]
            if top == "__future__" or top in sys.stdlib_module_names:
                continue
            if top == "streamproc":
                if not any(mod == p or mod.startswith(p + ".") for p in ours):
                    wrong.append(f"{path.relative_to(ROOT)}: {mod}")
            elif top not in third_party:
                wrong.append(f"{path.relative_to(ROOT)}: {mod}")
    assert not wrong, "imports the package's rule does not allow:\n" + "\n".join(wrong)


def test_only_the_command_line_imports_the_tools() -> None:
    """The product never depends on its tools (replay, produce, demo): they sit on top."""
    wrong = []
    for path in sorted([*PKG.rglob("*.py"), *(ROOT / "agents").rglob("*.py")]):
        if "node_modules" in path.parts:
            continue
        rel = path.relative_to(ROOT).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        if module == TOOLS or module.startswith(TOOLS + ".") or module in COMMAND_LINE:
            continue
        for mod in _imports(path, _package_of(path)):
            if mod == TOOLS or mod.startswith(TOOLS + "."):
                wrong.append(f"{rel}: {mod}")
    assert not wrong, "the tools are imported by the product:\n" + "\n".join(wrong)


def test_every_package_says_what_it_owns() -> None:
    for init in sorted(PKG.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.relative_to(ROOT)} has no docstring"


def test_the_rules_see_a_violation(tmp_path: Path) -> None:
    """The checker itself: an I/O import in a pure module is found."""
    bad = tmp_path / "m.py"
    bad.write_text("import aiokafka\nfrom ..sink import base\n\ndef f():\n    import chdb\n")
    assert _imports(bad, "streamproc.engine") == {"aiokafka", "streamproc.sink.base", "chdb"}


def test_a_module_over_400_lines_says_why_at_its_top() -> None:
    """Modules stay small, or their docstring says why not (a ``Size`` paragraph)."""
    long = []
    for path in sorted([*PKG.rglob("*.py"), *(ROOT / "agents").rglob("*.py")]):
        if "node_modules" in path.parts or len(path.read_text().splitlines()) <= 400:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if "Size (" not in doc:
            long.append(str(path.relative_to(ROOT)))
    assert not long, "over 400 lines with no reason at the top:\n" + "\n".join(long)
