"""The layout of ``model/`` is the architecture: subpackages on layers, imports only go down.

See ARCHITECTURE.md. A subpackage may import from subpackages on lower layers only; ``ui`` ->
``explorer`` -> ``model``, never the other way; ``model`` and ``explorer`` import no widgets.
"""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Layer of each subpackage of model/ (lower layers know nothing of higher ones).
LAYERS = {"geometry": 0, "io": 1, "render": 1, "memory": 2, "eval": 2, "generation": 3, "baselines": 4, "training": 5}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``import a.b`` and ``from a.b import c``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_every_model_subpackage_is_on_a_layer():
    packages = {p.name for p in (ROOT / "model").iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)


def test_model_subpackages_import_only_lower_layers():
    upward = []
    for path in sorted((ROOT / "model").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if len(parts) < 3:
            continue
        for module in imported_modules(path):
            target = module.split(".")
            if target[0] == "model" and len(target) > 1 and target[1] in LAYERS and target[1] != parts[1]:
                if LAYERS[target[1]] >= LAYERS[parts[1]]:
                    upward.append(f"{path.relative_to(ROOT)} imports {module}")
    assert upward == []


@pytest.mark.parametrize(
    "package, forbidden",
    [("model", ("explorer", "ui", "PySide6")), ("explorer", ("ui", "PySide6.QtWidgets", "PySide6.QtGui"))],
)
def test_layers_above_stay_above(package, forbidden):
    hits = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in forbidden or module in forbidden
    ]
    assert hits == []


@pytest.mark.parametrize("package", sorted(LAYERS.keys() - {"training"}))
def test_public_names_are_importable_from_their_subpackage(package):
    module = importlib.import_module(f"model.{package}")
    assert module.__all__, f"model.{package} names no public API"
    for name in module.__all__:
        assert getattr(module, name) is not None
    with pytest.raises(AttributeError, match="no attribute"):
        module.no_such_name  # noqa: B018
