"""The house's import rules: data/ and data_prep/ never import models/, losses/ or tasks/; models/ never imports
checkpoints/ (building a model reads no file)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "xvlm_lit"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("folder", "forbidden"), [
    (PKG / "data", ("xvlm_lit.models", "xvlm_lit.losses", "xvlm_lit.tasks")),
    (ROOT / "data_prep", ("xvlm_lit.models", "xvlm_lit.losses", "xvlm_lit.tasks")),
    (PKG / "models", ("xvlm_lit.checkpoints", "xvlm_lit.tasks", "xvlm_lit.losses", "xvlm_lit.data")),
])
def test_imports_flow_one_way(folder, forbidden):
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p in sorted(folder.rglob("*.py"))
           for m in imported_modules(p) if m.startswith(forbidden)]
    assert not bad, bad
