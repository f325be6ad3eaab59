"""The shape of the code: what a newcomer can rely on when reading it (docs/design.md, "Package map").

The layers and the absence of import cycles are import-linter contracts (``pyproject.toml``,
``lint-imports`` in scripts/test.sh); these tests check the rest.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from support.helpers import REPO_ROOT

LIB = REPO_ROOT / "labelloop"
CODE = ("labelloop", "assets", "resources", "pipelines")


def packages() -> list[Path]:
    return sorted(p.parent for root in CODE for p in (REPO_ROOT / root).rglob("__init__.py")
                  if "data" not in p.relative_to(REPO_ROOT).parts)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_library_is_small_at_the_top_and_in_every_package():
    top = sorted(p.name for p in LIB.iterdir() if p.name != "__pycache__")
    assert len(top) <= 17, top  # 16 + training (issue #18: the layer above release)
    for pkg in packages():
        modules = [p for p in pkg.iterdir() if p.name != "__pycache__" and p.name != "__init__.py"
                   and (p.suffix == ".py" or p.is_dir())]
        assert len(modules) <= 16, (pkg, [m.name for m in modules])


@pytest.mark.parametrize("pkg", packages(), ids=lambda p: module_name(p / "__init__.py"))
def test_every_package_says_what_it_is_and_what_it_exports(pkg):
    init = pkg / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{init}: no docstring"
    if pkg.parent == REPO_ROOT and pkg.name in ("assets", "resources", "pipelines"):
        return  # Dagster's own packages: the code location assembles them
    alls = [n for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)]
    assert alls, f"{init}: no __all__"
    names = ast.literal_eval(alls[0].value)
    submodules = {p.stem for p in pkg.glob("*.py")} | {p.name for p in pkg.iterdir() if p.is_dir()}
    bound = {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    bound |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    for name in names:  # every exported name exists; an exported object never hides a submodule
        assert name in bound or name in submodules or name == "__version__", (init, name)
        assert not (name in bound and name in submodules), f"{init}: {name!r} shadows the submodule {name}"


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, [a.name for a in node.names]


def test_no_private_name_crosses_a_package_boundary():
    bad = []
    for root in CODE:
        for path in (REPO_ROOT / root).rglob("*.py"):
            here = module_name(path).rpartition(".")[0] if path.name != "__init__.py" else module_name(path)
            for module, names in imports(path):
                if module.split(".")[0] not in CODE:
                    continue
                owner = module.rpartition(".")[0] if (REPO_ROOT / Path(*module.split("."))).with_suffix(".py").is_file() \
                    else module
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private and owner != here:
                    bad.append(f"{path.relative_to(REPO_ROOT)}: {module} {private}")
    assert not bad, bad


def test_no_test_module_imports_another():
    tests = REPO_ROOT / "tests"
    test_modules = {p.stem for p in tests.rglob("test_*.py")} | {"conftest"}
    bad = [f"{p.relative_to(REPO_ROOT)}: {m}" for p in list(tests.rglob("*.py")) + list((REPO_ROOT / "benchmarks").rglob("*.py"))
           if "fixtures" not in p.parts for m, _ in imports(p) if m.split(".")[0] in test_modules]
    assert not bad, bad


def test_the_library_imports_no_dagster_even_inside_functions():
    """What the import-linter contract says, checked on a fresh interpreter: importing every
    labelloop module loads no Dagster module."""
    mods = sorted(module_name(p) for p in LIB.rglob("*.py") if "backends" not in p.parts)
    code = "import sys\n" + "".join(f"import {m}\n" for m in mods) + \
        "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_every_library_module_is_in_the_api_reference():
    pages = "\n".join(p.read_text(encoding="utf-8") for p in [*(REPO_ROOT / "docs" / "api").glob("*.md"),
                                                               REPO_ROOT / "docs" / "api.md"])
    missing = [module_name(p) for p in LIB.rglob("*.py") if "data" not in p.parts
               and f".. automodule:: {module_name(p)}\n" not in pages]
    assert not missing, f"add them to docs/api/<package>.md: {missing}"
