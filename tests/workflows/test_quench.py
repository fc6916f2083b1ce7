"""The quench stage: MD snapshots relaxed to their local minima, minima deduplicated, roles in the datasets."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from pymatgen.core import Lattice, Structure

from aiida_crystalgan.data.dataset import LABELLED, MINIMUM, CrystalDatasetData, StructureRecord
from aiida_crystalgan.engines.outputs import build_results
from aiida_crystalgan.workflows.quench import (
    QuenchWorkChain,
    checked_dataset,
    evenly_spaced,
    match_relaxed,
    select_snapshots,
    split_roles,
)
from aiida_crystalgan.workflows.sampling import SamplingWorkChain

#: Loose relaxation and coarse phonons: seconds for a 2-atom cell.
STABILITY = {
    'relax': {'fmax': 0.05, 'max_steps': 100},
    'force_tolerance': 0.1,
    'phonons': {'supercell_min_length': 4.0, 'mesh': [2, 2, 2], 'frequency_tolerance': 0.5},
}


def bcc_niobium(a: float = 3.32) -> Structure:
    return Structure(Lattice.cubic(a), ['Nb', 'Nb'], [[0, 0, 0], [0.5, 0.5, 0.5]])


def split_steps(dataset: CrystalDatasetData) -> tuple[list[StructureRecord], list[StructureRecord]]:
    """The relaxed structures and the relaxation steps (labels ``...:step<n>``) of a quench dataset."""
    records = list(dataset.records())
    return [r for r in records if ':step' not in r.label], [r for r in records if ':step' in r.label]


def count_process_nodes() -> int:
    return orm.QueryBuilder().append(orm.ProcessNode).count()


@pytest.mark.parametrize(
    ('count', 'maximum', 'expected'),
    [
        (1, 3, [0]),
        (2, 3, [1]),
        (11, 1, [10]),
        (11, 3, [1, 6, 10]),
        (4, 10, [1, 2, 3]),
    ],
)
def test_evenly_spaced_frames_skip_the_start_and_keep_the_last(count, maximum, expected):
    assert evenly_spaced(count, maximum) == expected


def test_snapshots_of_a_dataset_are_subsampled_per_trajectory():
    """Two trajectories (label prefix ``<key>:``) of five frames each: two frames of each, the last included."""
    structures, labels = [], []
    for key in ('nb_300K', 'nb_900K'):
        for frame in range(5):
            structures.append(bcc_niobium(3.30 + 0.01 * frame))
            labels.append(f'{key}:{frame}')
    snapshots = CrystalDatasetData.from_structures(structures, labels=labels, sources=['traj'] * 10)
    selected = select_snapshots(snapshots, orm.Int(2))
    assert sorted(selected) == ['nb_300K_f1', 'nb_300K_f4', 'nb_900K_f1', 'nb_900K_f4']
    assert selected['nb_900K_f4'].cell[0][0] == pytest.approx(3.34)


def test_equivalent_minima_keep_the_lowest_energy_and_the_others_stay_labelled():
    def record(a: float, energy: float, label: str) -> StructureRecord:
        return StructureRecord.from_pymatgen(bcc_niobium(a), energy=energy, forces=np.zeros((2, 3)), label=label)

    labelled, minima = split_roles([record(3.5, -19.0, 'md')], [record(3.32, -20.0, 'a'), record(3.321, -20.1, 'b')])
    assert [(r.label, r.role) for r in minima] == [('b', MINIMUM)]
    assert [(r.label, r.role) for r in labelled] == [('md', LABELLED), ('a', LABELLED)]


def test_relaxed_structures_inherit_the_verdict_of_an_equivalent_known_one_and_are_checked_once():
    def record(
        structure: Structure, energy: float, label: str = '', role: str = LABELLED, force: float = 0.0
    ) -> StructureRecord:
        forces = np.full((len(structure), 3), force)
        return StructureRecord.from_pymatgen(structure, energy=energy, forces=forces, label=label, role=role)

    fcc = Structure(Lattice.cubic(4.2), ['Nb'] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    hcp = Structure(Lattice.hexagonal(2.9, 4.7), ['Nb', 'Nb'], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    known = [
        record(bcc_niobium(), -20.0, 'bcc', MINIMUM),
        record(fcc, -38.0, 'fcc'),
        record(hcp, -19.0, 'hcp_unrelaxed', force=1.0),
    ]
    relaxed = {
        'bcc': record(bcc_niobium(3.321), -20.0),
        'fcc': record(fcc, -38.0),
        'hcp_a': record(hcp, -19.0),
        'hcp_b': record(hcp, -19.1),
        'hcp_far': record(hcp, -19.0, force=1.0),
    }
    matches = match_relaxed(relaxed, known, force_tolerance=0.1)
    assert matches == {
        'bcc': {'is_local_minimum': True, 'known': 'bcc', 'checked_as': None},
        'fcc': {'is_local_minimum': False, 'known': 'fcc', 'checked_as': None},
        # the known hcp did not relax: no verdict to inherit; the lower in energy of the two is checked for both
        'hcp_a': {'is_local_minimum': None, 'known': None, 'checked_as': 'hcp_b'},
        'hcp_b': {'is_local_minimum': None, 'known': None, 'checked_as': 'hcp_b'},
        'hcp_far': {'is_local_minimum': False, 'known': None, 'checked_as': None},
    }


@pytest.mark.parametrize('given', ['both', 'neither'])
def test_quench_needs_either_snapshots_or_trajectories(mlip_code, given):
    snapshots = CrystalDatasetData.from_structures([bcc_niobium()])
    trajectory = orm.TrajectoryData([orm.StructureData(pymatgen=bcc_niobium())])
    builder = QuenchWorkChain.get_builder_from_protocol(
        {'code': mlip_code},
        snapshots=snapshots if given == 'both' else None,
        trajectories={'nb': trajectory} if given == 'both' else None,
    )
    before = count_process_nodes()
    with pytest.raises(ValueError, match='either as `snapshots`'):
        run_get_node(builder)
    assert count_process_nodes() == before


def test_quench_of_md_trajectories(mlip_code):
    """MD of bcc Nb, two snapshots quenched: both relax back to bcc, which is one distinct minimum."""
    nb = orm.StructureData(pymatgen=bcc_niobium())
    sampling = {'temperatures': [300], 'steps': 8, 'timestep': 2.0, 'sample_interval': 4}
    md, node = run_get_node(
        SamplingWorkChain, structures={'nb': nb}, parameters=orm.Dict(sampling), engine={'code': mlip_code}
    )
    assert node.is_finished_ok, node.exit_message

    builder = QuenchWorkChain.get_builder_from_protocol(
        {'code': mlip_code},
        trajectories=dict(md['trajectories']),
        overrides={'max_snapshots': 2, 'stability': STABILITY},
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message

    minima = results['minima']
    assert minima.size == 1 and minima.num_minima == 1
    [minimum] = minima.records()
    assert minimum.label.startswith('quench:nb_300K_f')
    assert np.linalg.norm(minimum.forces, axis=1).max() < STABILITY['force_tolerance']
    labelled = results['labelled']
    relaxed, steps = split_steps(labelled)
    assert len(relaxed) == 1 and labelled.num_labelled == labelled.size
    assert np.isfinite(relaxed[0].energy) and relaxed[0].energy >= minimum.energy
    # the relaxations' steps, but not their starts (the MD snapshots, already data), are labelled data
    assert steps and len(steps) == labelled.metadata['relaxation_steps']
    assert all(int(record.label.rpartition(':step')[2]) > 0 for record in steps)
    assert all(record.forces.shape == (2, 3) and record.energy >= minimum.energy for record in steps)
    # the quenched snapshots went through the relaxation, force check and phonons of the stability stage
    [stability] = [child for child in node.called if child.process_label == 'StabilityWorkChain']
    assert all(verdict['dynamically_stable'] for verdict in stability.outputs.summary.get_dict().values())


def test_snapshot_equivalent_to_a_known_minimum_runs_no_phonons(mlip_code):
    """Distorted bcc Nb relaxes back to the known bcc minimum: labelled data, no stability check, no phonons."""
    structures = [bcc_niobium(), bcc_niobium(3.38), bcc_niobium(3.26)]  # the first frame is the start: not quenched
    snapshots = CrystalDatasetData.from_structures(structures, labels=['nb:0', 'nb:1', 'nb:2'], sources=['traj'] * 3)
    known = CrystalDatasetData.from_structures(
        [bcc_niobium()], energies=[-20.0], forces=[np.zeros((2, 3))], labels=['nb'], roles=MINIMUM
    )
    builder = QuenchWorkChain.get_builder_from_protocol(
        {'code': mlip_code}, snapshots=snapshots, overrides={'max_snapshots': 2, 'stability': STABILITY}
    )
    builder.known = known
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message

    assert 'minima' not in results
    labelled = results['labelled']
    relaxed, steps = split_steps(labelled)
    assert len(relaxed) == 2 and labelled.num_labelled == labelled.size
    assert labelled.metadata['matched_known'] == 2
    assert len(steps) == labelled.metadata['relaxation_steps'] > 0
    called = {child.process_label for child in node.called_descendants}
    assert 'MlipEngineWorkChain' in called  # the snapshots were relaxed
    assert 'StabilityWorkChain' not in called and 'PhononWorkChain' not in called


def test_checked_structures_keep_their_verdict_as_role():
    """The campaign's ``known`` structures: every checked structure, equivalent minima not merged."""
    nodes, summary = {}, {}
    for key, a, is_minimum in (('nb', 3.32, True), ('nb_copy', 3.321, True), ('nb_strained', 3.6, False)):
        nodes[f'structure_{key}'] = orm.StructureData(pymatgen=bcc_niobium(a))
        nodes[f'results_{key}'] = build_results(-20.0, np.zeros((2, 3)), np.zeros((3, 3)), converged=True)
        summary[key] = {'is_local_minimum': is_minimum}
    known = checked_dataset(orm.Dict(summary), **nodes)
    assert sorted((record.label, record.role) for record in known) == [
        ('checked:nb', MINIMUM),
        ('checked:nb_copy', MINIMUM),
        ('checked:nb_strained', LABELLED),
    ]
