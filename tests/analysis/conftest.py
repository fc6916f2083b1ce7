"""Structures for the analysis tests, built with pymatgen from crystallographic data (no files needed).

Each is built once (pymatgen's ``from_spacegroup`` is slow) and every test gets its own copy.
"""

from __future__ import annotations

from functools import cache

import pytest
from pymatgen.core import Lattice, Structure


@cache
def _pristine(name: str) -> Structure:
    if name == 'rutile':  # NbO2, P4_2/mnm: Nb 2a, O 4f (x, x, 0)
        lattice = Lattice.tetragonal(4.85, 3.03)
        return Structure.from_spacegroup(136, lattice, ['Nb', 'O'], [[0, 0, 0], [0.2925, 0.2925, 0]])
    if name == 'rocksalt':  # NbO, Fm-3m, conventional cell of 8 atoms
        return Structure.from_spacegroup(225, Lattice.cubic(4.24), ['Nb', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    if name == 'bcc':  # Nb, Im-3m, conventional cell of 2 atoms
        return Structure.from_spacegroup(229, Lattice.cubic(3.30), ['Nb'], [[0, 0, 0]])
    if name == 'nbo':  # NbO, Pm-3m: Nb 3c, O 3d (rocksalt with ordered vacancies)
        return Structure.from_spacegroup(221, Lattice.cubic(4.21), ['Nb', 'O'], [[0, 0.5, 0.5], [0.5, 0, 0]])
    raise KeyError(name)


@pytest.fixture
def rutile() -> Structure:
    return _pristine('rutile').copy()


@pytest.fixture
def rocksalt() -> Structure:
    return _pristine('rocksalt').copy()


@pytest.fixture
def bcc() -> Structure:
    return _pristine('bcc').copy()


@pytest.fixture
def nbo() -> Structure:
    return _pristine('nbo').copy()
