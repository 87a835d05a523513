"""Every third-party import of the package is declared in setup.cfg, and the floors test-min pins are those."""

import ast
import sys
from importlib import metadata
from pathlib import Path

import pytest

from sam_mito.errors import SamMitoError
from sam_mito.evaluation import metrics
from tests import _floors

ROOT = Path(__file__).resolve().parents[1]
#: The installed package: ``sam_mito/`` and the card templates installed as ``sam_mito.hub_cards``.
SOURCES = [ROOT / "sam_mito", ROOT / "hub_cards"]
FIRST_PARTY = {"sam_mito", "hub_cards", "tests"}


def _imports() -> dict[str, list[Path]]:
    """``{top-level module: files importing it}`` of every absolute import, lazy ones in functions too."""
    found: dict[str, list[Path]] = {}
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], []).append(path)
    return found


def _third_party() -> dict[str, list[Path]]:
    return {
        module: paths
        for module, paths in _imports().items()
        if module not in sys.stdlib_module_names and module not in FIRST_PARTY
    }


def _distribution(module: str) -> str:
    """The installed distribution providing ``module`` (``PIL`` -> ``pillow``, ``yaml`` -> ``pyyaml``)."""
    distributions = metadata.packages_distributions().get(module)
    if not distributions:
        pytest.fail(f"{module!r} is imported by sam_mito but no installed distribution provides it")
    return _floors.canonical(distributions[0])


def test_the_import_scan_sees_lazy_and_aliased_imports():
    third_party = _third_party()
    assert {"torch", "transformers", "PIL", "yaml", "evaluate"} <= set(third_party)
    # load_metric imports evaluate inside the function; the asset script imports it at the top
    assert ROOT / "sam_mito" / "evaluation" / "metrics.py" in third_party["evaluate"]
    assert "os" not in third_party and "sam_mito" not in third_party


def test_every_third_party_import_is_a_declared_dependency():
    sections = {
        section: {_floors.canonical(name) for name, _ in reqs}
        for section, reqs in _floors.requirements().items()
    }
    required = sections.pop("install_requires")
    sections.pop("dev", None)  # the test tools: nothing in the package may need them
    problems = []
    for module, paths in sorted(_third_party().items()):
        distribution = _distribution(module)
        if distribution in required:
            continue
        extras = [extra for extra, names in sections.items() if distribution in names]
        if not extras:
            problems.append(f"{module} ({distribution}): in none of install_requires or the extras")
            continue
        # an optional import must say, where it is imported, which extra brings it
        for path in sorted(set(paths)):
            text = path.read_text(encoding="utf-8")
            if not any(f"{_floors.PROJECT}[{extra}]" in text for extra in extras):
                wanted = " or ".join(f'"{_floors.PROJECT}[{extra}]"' for extra in extras)
                problems.append(f"{path.relative_to(ROOT)} imports {module} without naming {wanted}")
    assert not problems, "\n".join(problems)


def test_evaluate_is_optional_and_the_dev_tools_have_it():
    sections = _floors.requirements()
    assert "evaluate" not in {_floors.canonical(name) for name, _ in sections["install_requires"]}
    assert "evaluate" in {_floors.canonical(name) for name, _ in sections["metrics"]}
    dev_lines = (ROOT / "setup.cfg").read_text().split("\ndev =\n")[1].split("\n\n")[0].splitlines()
    assert "sam-mito[metrics]" in [line.strip() for line in dev_lines]


def test_load_metric_without_evaluate_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "evaluate", None)  # `import evaluate` now fails as if absent
    with pytest.raises(SamMitoError, match=r'pip install "sam-mito\[metrics\]"'):
        metrics.load_metric()


def test_a_broken_dependency_of_evaluate_is_not_reported_as_evaluate_missing(monkeypatch):
    class BrokenEvaluate:
        def find_spec(self, name, path=None, target=None):
            if name == "evaluate":
                raise ModuleNotFoundError("No module named 'pyarrow'", name="pyarrow")
            return None

    monkeypatch.delitem(sys.modules, "evaluate", raising=False)
    monkeypatch.setattr(sys, "meta_path", [BrokenEvaluate(), *sys.meta_path])
    with pytest.raises(ModuleNotFoundError) as err:
        metrics.load_metric()
    assert err.value.name == "pyarrow" and not isinstance(err.value, SamMitoError)


def test_every_runtime_requirement_is_one_floor_test_min_pins():
    pinned = _floors.floors()
    runtime = _floors.requirements()["install_requires"]
    assert {_floors.canonical(name) for name, _ in runtime} <= set(pinned)
    assert pinned["transformers"] and pinned["evaluate"]  # an extra's floor is pinned too
    assert "pytest" not in pinned and "sam-mito" not in pinned  # dev tools float


def test_constraints_pin_each_floor_exactly_and_overrides_replace_it(tmp_path):
    cfg = tmp_path / "setup.cfg"
    cfg.write_text(
        "[options]\ninstall_requires =\n    # a comment\n    torch>=2.4\n    PyYAML>=6.0\n"
        "[options.extras_require]\nmetrics =\n    evaluate>=0.4.0\ndev =\n    sam-mito[metrics]\n"
        "    pytest>=7\n"
    )
    text = _floors.constraints(["torch==2.13.0"], setup_cfg=cfg)
    assert text == "evaluate==0.4.0\npyyaml==6.0\ntorch==2.13.0\n"
    freeze = "evaluate==0.4.0\nPyYAML==6.0\ntorch==2.13.0+cpu\npytest==9.0\n-e git+https://x#egg=sam_mito\n"
    assert _floors.mismatches(freeze, ["torch==2.13.0"], setup_cfg=cfg) == []
    assert _floors.mismatches("PyYAML==6.0.1\ntorch==2.13.0\n", ["torch==2.13.0"], setup_cfg=cfg) == [
        "evaluate: not installed (floor 0.4.0)",
        "pyyaml: 6.0.1 installed, not the floor 6.0",
    ]


def test_a_requirement_test_min_cannot_pin_is_refused(tmp_path):
    cfg = tmp_path / "setup.cfg"
    cfg.write_text("[options]\ninstall_requires =\n    numpy>=2,<3\n")
    with pytest.raises(ValueError, match=r"numpy>=2,<3: expected a single floor"):
        _floors.floors(cfg)
