"""Sphinx configuration of the aiida-crystalgan documentation (MyST markdown pages)."""

from __future__ import annotations

import aiida_crystalgan

project = 'aiida-crystalgan'
author = 'aiida-crystalgan developers'
copyright = '2026, aiida-crystalgan developers'
version = release = aiida_crystalgan.__version__

extensions = [
    'myst_parser',
    'sphinx_click',
    'autoapi.extension',
]

source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
root_doc = 'index'
# The tutorial notebook is executed by its own test; the documentation does not render notebooks (yet).
exclude_patterns = ['_build', '**.ipynb', '**/.ipynb_checkpoints']

myst_enable_extensions = ['colon_fence', 'deflist', 'dollarmath']
myst_heading_anchors = 3

# The API reference is read from the source without importing it, so it needs no AiiDA profile and follows any
# module that is added, moved or renamed.
autoapi_type = 'python'
autoapi_dirs = ['../aiida_crystalgan']
autoapi_root = 'api'
autoapi_add_toctree_entry = False
autoapi_keep_files = False
autoapi_member_order = 'groupwise'
autoapi_options = ['members', 'show-inheritance', 'show-module-summary']

html_theme = 'furo'
html_title = f'aiida-crystalgan {release}'
