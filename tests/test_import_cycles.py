"""No import cycle inside the package (scripts/import_cycles.py: every import statement, lazy ones too)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_cycles.py"


def _script():
    spec = importlib.util.spec_from_file_location("import_cycles", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_package_has_no_import_cycle():
    ic = _script()
    assert ic.cycles(ic.edges(ic.modules())) == []


def test_a_lazy_import_back_is_a_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n")
    (pkg / "d.py").write_text("from . import c\n")
    ic = _script()
    assert ic.cycles(ic.edges(ic.modules(pkg))) == [["pkg.a", "pkg.b"]]
