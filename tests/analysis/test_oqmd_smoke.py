"""Cross-checks against the OQMD Nb-O structures of the shared data folder; skipped where it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymatgen.core import Structure

from aiida_crystalgan.analysis.matching import reference_matches
from aiida_crystalgan.analysis.postprocess import DropReason, postprocess
from aiida_crystalgan.structures.prototypes import seed_structures

OQMD = Path('/work/shared/data/nb-o_oqmd/cif')

pytestmark = pytest.mark.skipif(not OQMD.is_dir(), reason='shared OQMD Nb-O data not available')


@pytest.fixture(scope='module')
def oqmd() -> dict[str, Structure]:
    return {path.stem: Structure.from_file(path) for path in sorted(OQMD.glob('*.cif'))}


def test_seeds_match_oqmd_phases(oqmd):
    seeds = {seed.label: seed.structure for seed in seed_structures('Nb-O')}
    names = list(oqmd)
    labels = ['NbO-NbO-type', 'NbO2-rutile', 'Nb2O5-B-Nb2O5-type', 'Nb2O3-corundum']
    matches = reference_matches([seeds[label] for label in labels], list(oqmd.values()))
    found = {label: names[match] if match is not None else None for label, match in zip(labels, matches)}
    assert found['NbO-NbO-type'] == 'oqmd-2921_NbO'
    assert found['NbO2-rutile'] == 'oqmd-10057_NbO2'
    assert found['Nb2O5-B-Nb2O5-type'] == 'oqmd-3586_Nb2O5'
    assert found['Nb2O3-corundum'] is not None


def test_postprocess_oqmd_against_itself(oqmd):
    structures = list(oqmd.values())
    names = list(oqmd)
    assert names[4] == 'oqmd-1233956_Nb2O'
    result = postprocess(structures, training=structures[:5])
    assert sum(result.counts.values()) == len(structures)
    assert [(report.reason, report.match_index) for report in result.reports[:4]] == [
        (DropReason.IN_TRAINING, index) for index in range(4)
    ]
    assert result.reports[4].reason is DropReason.CHARGE_IMBALANCED  # Nb2O needs Nb+, absent from ICSD
    assert result.counts['invalid_structure'] == 0
    assert all(report.detail for report in result.reports if not report.kept)
