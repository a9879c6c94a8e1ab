"""Imports flow one way: augment ← codegen ← hil ← eenn's pipeline commands (docs/interfaces.md).

Every import is checked, the lazy ones inside functions too (they are where a back-reference
hides: the search once imported codegen's converter that way)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = {"augment": 0, "codegen": 1, "hil": 2}
# eenn's own modules below every stage (errors, field readers, paths, atomic writes, TF logging)
BELOW = {"eenn", "eenn.errors", "eenn.fields", "eenn.paths", "eenn.atomic", "eenn.quiet_tf"}


def _level(module: str) -> int | None:
    """The stage an `eenn.*` module belongs to: 0–2, 3 for the commands on top, None below all."""
    if module in BELOW:
        return None
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in STAGES:
        return STAGES[parts[1]]
    return 3  # eenn.cli, eenn.deploy, eenn.report, eenn.examples, ...


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module in ("eenn.augment", "eenn.codegen", "eenn.hil"):  # from eenn.codegen import x
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
            elif node.module == "eenn":  # a module of eenn/ (from eenn import deploy) or an attribute
                found += [(node.lineno, f"eenn.{a.name}") for a in node.names if (REPO / "eenn" / f"{a.name}.py").exists()]
    return [(line, m) for line, m in found if m == "eenn" or m.startswith("eenn.")]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_imports_only_itself_and_earlier_stages(stage):
    level = STAGES[stage]
    wrong = []
    for path in sorted((REPO / stage).glob("*.py")):
        for line, module in _imports(path):
            other = _level(module)
            if other is not None and other > level:
                wrong.append(f"{stage}/{path.name}:{line} imports {module}")
    assert not wrong, "imports against the one-way flow:\n" + "\n".join(wrong)


def test_the_check_sees_a_lazy_back_import(tmp_path):
    """The checker itself: an import inside a function, to a later stage, is found."""
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from eenn.codegen.subgraphs import convert_int8\n    return convert_int8\n")
    assert [_level(m) for _, m in _imports(p)] == [1]
    p.write_text("from eenn.hil import run\n")
    assert [_level(m) for _, m in _imports(p)] == [2, 2]
