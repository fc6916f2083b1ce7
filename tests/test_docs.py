"""The documentation builds with Sphinx without a single warning, and stays inside the repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / 'docs'


def test_docs_point_nowhere_outside_the_repository():
    """No page names the steering folder or a path above the repository root."""
    pattern = re.compile(r'(\.\./)+shared|\bshared/DESIGN|\]\(\.\./\.\.')
    offending = [str(path.relative_to(DOCS)) for path in DOCS.rglob('*.md') if pattern.search(path.read_text())]
    assert not offending


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    """``sphinx-build -W --keep-going``: every page, the CLI reference and the API reference, warnings as errors."""
    command = [
        sys.executable,
        '-m',
        'sphinx',
        '-W',
        '--keep-going',
        '-q',
        '-b',
        'html',
        '-d',
        str(tmp_path / 'doctrees'),
        str(DOCS),
        str(tmp_path / 'html'),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
    assert result.returncode == 0, result.stderr[-5000:]
    html = tmp_path / 'html'
    cli_text = re.sub(r'<[^>]+>', '', (html / 'cli.html').read_text())
    assert 'aiida-crystalgan campaign submit [OPTIONS]' in cli_text
    assert 'CampaignWorkChain' in (html / 'genindex.html').read_text()
