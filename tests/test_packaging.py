"""Packaging metadata: ``setup.json`` mirrors ``pyproject.toml``, one version source, every import declared."""

from __future__ import annotations

import ast
import json
import re
import runpy
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Import names of optional engines' packages that need not be installed here, and their distribution names.
setup_json_module = runpy.run_path(str(ROOT / 'scripts' / 'setup_json.py'))
setup_json_module = type(
    'SetupJson',
    (),
    {name: staticmethod(setup_json_module[name]) for name in ('setup_json_from_pyproject', 'version_from_source')},
)
OPTIONAL_DISTRIBUTIONS = {'mace': 'mace-torch', 'sevenn': 'sevenn'}


@pytest.fixture(scope='module')
def pyproject() -> dict:
    with open(ROOT / 'pyproject.toml', 'rb') as handle:
        return tomllib.load(handle)


@pytest.fixture(scope='module')
def setup_json() -> dict:
    return json.loads((ROOT / 'setup.json').read_text())


def _requirement_name(requirement: str) -> str:
    """Normalised distribution name of a requirement string (PEP 503)."""
    name = re.match(r'[A-Za-z0-9._-]+', requirement).group(0)
    return re.sub(r'[-_.]+', '-', name).lower()


def test_one_version_source(pyproject):
    """The version lives only in the package: pyproject reads it dynamically, ``setup.json`` repeats it."""
    import aiida_crystalgan

    assert 'version' not in pyproject['project']
    assert 'version' in pyproject['project']['dynamic']
    assert setup_json_module.version_from_source(pyproject) == aiida_crystalgan.__version__


def test_setup_json_matches_pyproject(pyproject, setup_json):
    """Every field that ``setup.json`` holds says what ``pyproject.toml`` says (``scripts/setup_json.py`` writes it)."""
    expected = setup_json_module.setup_json_from_pyproject(pyproject)
    assert set(setup_json) == set(expected)
    for key, value in expected.items():
        assert setup_json[key] == value, f'setup.json `{key}` differs from pyproject.toml: run scripts/setup_json.py'


def _third_party_imports(package_dir: Path, own_packages: set[str]) -> dict[str, tuple[str, bool]]:
    """Top-level names of absolute imports outside the standard library.

    Each maps to one file that imports it and whether any import of it runs when its module is imported (rather than
    inside a function, as optional engines are imported, or under ``TYPE_CHECKING``).
    """
    found: dict[str, tuple[str, bool]] = {}

    def visit(node: ast.AST, path: Path, in_function: bool) -> None:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split('.')[0]
            if top not in sys.stdlib_module_names and top not in own_packages:
                first_path, eager = found.get(top, (str(path.relative_to(ROOT)), False))
                found[top] = (first_path, eager or not in_function)
        type_checking = isinstance(node, ast.If) and 'TYPE_CHECKING' in ast.unparse(node.test)
        nested = in_function or type_checking or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, path, nested)

    for path in sorted(package_dir.rglob('*.py')):
        visit(ast.parse(path.read_text(), filename=str(path)), path, False)
    return found


def test_every_import_is_declared(pyproject):
    """A module-level import comes from a dependency; one inside a function (optional engines) may need an extra."""
    project = pyproject['project']
    core = {_requirement_name(r) for r in project['dependencies']}
    optional = {_requirement_name(r) for extra in project['optional-dependencies'].values() for r in extra}
    distributions = packages_distributions()
    patterns = pyproject['tool']['setuptools']['packages']['find']['include']
    package_dirs = {path.parent for pattern in patterns for path in ROOT.glob(f'{pattern}/__init__.py')}
    assert package_dirs, 'no package found by [tool.setuptools.packages.find]'
    own_packages = {directory.name for directory in package_dirs}
    missing = []
    for package_dir in sorted(package_dirs):
        for module, (path, eager) in _third_party_imports(package_dir, own_packages).items():
            candidates = {
                _requirement_name(c) for c in distributions.get(module, [OPTIONAL_DISTRIBUTIONS.get(module, module)])
            }
            if not candidates & (core if eager else core | optional):
                where = 'dependencies' if eager else 'dependencies or an extra'
                missing.append(f'{module} (imported in {path}, distribution {sorted(candidates)}, not in {where})')
    assert not missing, f'imports not declared in pyproject.toml: {missing}'


def test_license_and_changelog(pyproject):
    """The license file that the metadata names exists, and the changelog has an entry for the current version."""
    for name in pyproject['project']['license-files']:
        assert 'MIT License' in (ROOT / name).read_text()
    changelog = (ROOT / 'CHANGELOG.md').read_text()
    assert re.search(rf'^## \[{re.escape(setup_json_module.version_from_source(pyproject))}\]', changelog, re.MULTILINE)
