"""The AiiDA-free phonon check (the pieces the ``crystalgan.phonons`` workchain and the benchmark share)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_crystalgan.analysis.phonons import phonon_check, supercell_matrix_for_length


def test_supercell_matrix_for_length():
    assert supercell_matrix_for_length(np.diag([3.0, 5.0, 11.0]), 10.0) == np.diag([4, 2, 1]).tolist()


def test_fcc_copper_is_stable():
    """fcc Cu with EMT at its equilibrium lattice constant: no imaginary mode, acoustic modes at zero."""
    check = phonon_check(bulk('Cu', 'fcc', a=3.59), EMT(), supercell_min_length=6.0, mesh=(4, 4, 4))
    assert check.is_stable
    assert check.min_frequency == pytest.approx(0.0, abs=0.05)
    assert check.supercell_matrix == np.diag([3, 3, 3]).tolist()


def test_compressed_bcc_copper_is_unstable():
    """bcc Cu is dynamically unstable (its Bain path leads to fcc): an imaginary mode below the tolerance."""
    check = phonon_check(bulk('Cu', 'bcc', a=2.87), EMT(), supercell_min_length=6.0, mesh=(4, 4, 4))
    assert not check.is_stable
    assert check.min_frequency < -0.1


def test_supercell_too_large():
    assert phonon_check(bulk('Cu', 'fcc', a=3.59), EMT(), supercell_min_length=6.0, max_supercell_atoms=20) is None
