"""Write ``setup.json`` from ``pyproject.toml`` (the AiiDA plugin registry reads setup.json); ``--check`` only compares.

Usage: ``python scripts/setup_json.py`` after changing dependencies, entry points or metadata in pyproject.toml.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def version_from_source(pyproject: dict) -> str:
    """The version string that setuptools reads from the ``attr`` named in ``[tool.setuptools.dynamic]``."""
    module, attribute = pyproject['tool']['setuptools']['dynamic']['version']['attr'].rsplit('.', 1)
    source = ROOT.joinpath(*module.split('.'))
    path = source / '__init__.py' if source.is_dir() else source.with_suffix('.py')
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == attribute for t in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError(f'{attribute} is not assigned in {path}')


def setup_json_from_pyproject(pyproject: dict) -> dict:
    """The content ``setup.json`` must have for ``pyproject``."""
    project = pyproject['project']
    entry_points = {
        group: [f'{name} = {target}' for name, target in items.items()]
        for group, items in project.get('entry-points', {}).items()
    }
    entry_points['console_scripts'] = [f'{name} = {target}' for name, target in project.get('scripts', {}).items()]
    return {
        'name': project['name'],
        'version': version_from_source(pyproject),
        'description': project['description'],
        'author': project['authors'][0]['name'],
        'license': project['license'],
        'url': project['urls']['Homepage'],
        'classifiers': project['classifiers'],
        'python_requires': project['requires-python'],
        'install_requires': project['dependencies'],
        'extras_require': project['optional-dependencies'],
        'entry_points': entry_points,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='exit 1 when setup.json differs; write nothing')
    args = parser.parse_args()
    with open(ROOT / 'pyproject.toml', 'rb') as handle:
        expected = setup_json_from_pyproject(tomllib.load(handle))
    path = ROOT / 'setup.json'
    if args.check:
        current = json.loads(path.read_text())
        differing = sorted(key for key in set(current) | set(expected) if current.get(key) != expected.get(key))
        if differing:
            print(f'setup.json differs from pyproject.toml in: {", ".join(differing)}; run scripts/setup_json.py')
            return 1
        return 0
    path.write_text(json.dumps(expected, indent=4) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
