"""`import sam_mito`: lazy exports that resolve, the same names for type checkers, and a recipe that
needs nothing else."""

import ast
import re
from pathlib import Path

import sam_mito

ROOT = Path(__file__).resolve().parents[1]


def test_every_exported_name_resolves_to_the_object_its_module_defines():
    for name in sam_mito.__all__:
        value = getattr(sam_mito, name)
        if name != "__version__":
            assert getattr(value, "__name__", name) == name, name


def test_type_checkers_see_exactly_the_lazy_exports():
    tree = ast.parse((ROOT / "sam_mito" / "__init__.py").read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If))  # if TYPE_CHECKING:
    seen = {(node.module, alias.name) for node in block.body for alias in node.names}
    assert seen == {(module, name) for name, module in sam_mito._EXPORTS.items()}
    assert (ROOT / "sam_mito" / "py.typed").exists()


def test_the_example_recipe_imports_only_public_names():
    source = (ROOT / "examples" / "train_sam_mito.py").read_text()
    imported = re.findall(r"^from (sam_mito\S*) import", source, flags=re.M)
    assert imported == ["sam_mito"]
