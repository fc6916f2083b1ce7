"""The bookkeeping of a campaign's discovery rounds, without running one: the feedback of validated candidates into the
training set, the stop criterion, the training of later rounds and the checks of ``campaign extend``."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from click.testing import CliRunner

from aiida_crystalgan.cli import cmd_root
from aiida_crystalgan.data.dataset import LABELLED, MINIMUM, CrystalDatasetData, to_record
from aiida_crystalgan.engines.outputs import build_trajectory
from aiida_crystalgan.workflows.campaign import (
    CampaignWorkChain,
    continued_training,
    evaluated_nodes,
    feed_back_candidates,
    targets_beyond_minima,
    validate_rounds,
)
from aiida_crystalgan.workflows.generation import evaluate_candidates
from aiida_crystalgan.workflows.quench import relaxation_nodes

REFERENCES = {  # key: (symbols, cubic lattice constant in Å, fractional positions, energy per atom in eV)
    'Nb': (['Nb'], 3.3, [[0, 0, 0]], -10.1),
    'O2': (['O', 'O'], 4.0, [[0, 0, 0], [0.3, 0, 0]], -4.9),
    'NbO': (['Nb', 'O'], 4.2, [[0, 0, 0], [0.5, 0.5, 0.5]], -8.6),
}
NBO2 = (['Nb', 'O', 'O'], [[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]])
CANDIDATES = {  # key: (symbols, cubic lattice constant, fractional positions, energy per atom, local minimum)
    'c3': (NBO2[0], 4.80, NBO2[1], -8.2, True),  # below the hull: stable, and new
    'c4': (NBO2[0], 4.81, NBO2[1], -8.19, True),  # the same structure as c3: counted once
    'c7': (['Nb', 'O'], 4.3, [[0, 0, 0], [0.5, 0.5, 0.5]], -8.45, True),  # the known NbO: not novel
    'c9': (NBO2[0], 5.6, NBO2[1], -6.0, False),  # forces above the tolerance: labelled data only
}


def cubic_structure(symbols, constant, positions) -> orm.StructureData:
    structure = orm.StructureData(cell=np.eye(3) * constant)
    for symbol, position in zip(symbols, positions):
        structure.append_atom(symbols=symbol, position=np.dot(position, structure.cell))
    return structure.store()


#: Candidates whose relaxation returned its steps (``trajectory_frames``): key: the steps.
RELAXATION_STEPS = {'c9': [0, 4]}


def relaxation_results(
    structure: orm.StructureData, energy_per_atom: float, max_force: float, key: str = ''
) -> orm.ArrayData:
    """The engine results of a relaxed structure; for a key of ``RELAXATION_STEPS``, created by a process that also
    returned the relaxation's steps, as an engine does."""
    results = orm.ArrayData()
    forces = np.zeros((len(structure.sites), 3))
    forces[0, 0] = max_force
    results.set_array('forces', forces)
    results.set_array('stress', np.zeros((3, 3)))
    results.base.attributes.set_many(
        {
            'energy': energy_per_atom * len(structure.sites),
            'energy_per_atom': energy_per_atom,
            'max_force': max_force,
            'converged': True,
        }
    )
    if key in RELAXATION_STEPS:
        steps = RELAXATION_STEPS[key]
        positions = np.stack([structure.get_ase().get_positions()] * len(steps))
        trajectory = build_trajectory(
            structure.get_ase().get_chemical_symbols(),
            positions,
            np.stack([structure.cell] * len(steps)),
            times=None,
            steps=steps,
            energies=[energy_per_atom * len(structure.sites) + 1.0] * len(steps),
            forces=np.ones_like(positions),
            stress=np.zeros((len(steps), 3, 3)),
        )
        engine = orm.CalcFunctionNode().store()
        results.base.links.add_incoming(engine, LinkType.CREATE, f'results__{key}')
        trajectory.base.links.add_incoming(engine, LinkType.CREATE, f'trajectories__{key}')
        trajectory.store()
    return results.store()


@pytest.fixture
def round_of_candidates(aiida_profile_clean):
    """The training set of the reference phases (all minima), and a round's evaluation of ``CANDIDATES`` against it."""
    nodes, summary = {}, {}
    references = {key: cubic_structure(*values[:3]) for key, values in REFERENCES.items()}
    for key, structure in references.items():
        nodes[f'reference_structure_{key}'] = structure
        nodes[f'reference_results_{key}'] = relaxation_results(structure, REFERENCES[key][3], 0.01)
    for key, (*geometry, energy, is_minimum) in CANDIDATES.items():
        structure = cubic_structure(*geometry)
        nodes[f'structure_{key}'] = structure
        nodes[f'results_{key}'] = relaxation_results(structure, energy, 0.01 if is_minimum else 1.0, key)
        summary[key] = {
            'energy_per_atom': energy,
            'max_force': 0.01 if is_minimum else 1.0,
            'converged': True,
            'forces_below_tolerance': is_minimum,
            'min_frequency': None,
            'dynamically_stable': None,
            'is_local_minimum': is_minimum,
        }
    training = CrystalDatasetData.from_structures(
        list(references.values()),
        energies=[REFERENCES[key][3] * len(s.sites) for key, s in references.items()],
        labels=list(references),
        roles=[MINIMUM] * len(references),
    ).store()
    summary = orm.Dict(summary).store()

    def evaluate(dataset: CrystalDatasetData) -> orm.Dict:
        return evaluate_candidates(summary, dataset, orm.Float(0.1), **nodes)['evaluation']

    return training, evaluate


def test_feedback_enlarges_the_training_set_and_counts_new_sun_structures(round_of_candidates):
    training, evaluate = round_of_candidates
    evaluation = evaluate(training)
    nodes = evaluated_nodes(evaluation)
    relaxed = {f'{kind}_{key}' for kind in ('structure', 'results') for key in CANDIDATES}
    assert set(nodes) == relaxed | {f'trajectory_{key}' for key in RELAXATION_STEPS}

    outputs = feed_back_candidates(training, evaluation, orm.Int(1), **nodes)
    enlarged, summary = outputs['dataset'], outputs['summary'].get_dict()
    assert summary['new_sun'] in (['c3'], ['c4'])  # c4 is c3 again; c7 is the known NbO; c9 is no minimum
    assert summary['n_new_sun'] == 1 and summary['validated'] == 4
    assert summary['minima_added'] == 1  # the NbO2 of c3 and c4
    steps = sum(len(value) for value in RELAXATION_STEPS.values())
    assert summary['relaxation_steps_added'] == steps
    assert enlarged.size == training.size + len(CANDIDATES) + steps
    roles = {record.label: record.role for record in enlarged}
    assert roles['round_1:c9'] == LABELLED
    assert roles['round_1:c9:step0'] == roles['round_1:c9:step4'] == LABELLED  # the candidate as generated, a step
    assert roles['round_1:c7'] == LABELLED  # equivalent to the reference NbO, which is lower in energy
    assert {roles['round_1:c3'], roles['round_1:c4']} == {MINIMUM, LABELLED}
    assert all(np.isfinite(record.energy) for record in enlarged)
    assert enlarged.metadata['previous'] == training.uuid

    # the next round: its candidates, evaluated against the enlarged training set, are no longer novel: it stops
    again = feed_back_candidates(enlarged, evaluate(enlarged), orm.Int(2), **nodes)
    assert again['summary']['n_new_sun'] == 0
    assert again['summary']['minima_added'] == 0


def test_feedback_adds_the_cheap_pass_as_labelled_data(round_of_candidates, monkeypatch):
    """The cheap pass's end points and steps join as labelled data; not the end point of a validated candidate, which
    its validation relaxation starts from and brings."""
    training, evaluate = round_of_candidates
    evaluation = evaluate(training)
    monkeypatch.setitem(RELAXATION_STEPS, 'c12', [0, 3])
    short = {key: cubic_structure(NBO2[0], constant, NBO2[1]) for key, constant in (('c3', 4.9), ('c12', 5.2))}
    results = {key: relaxation_results(structure, -7.0, 0.5, key) for key, structure in short.items()}
    cheap = {f'cheap_{name}': node for name, node in relaxation_nodes(short, results).items()}
    assert set(cheap) == {'cheap_structure_c3', 'cheap_results_c3', 'cheap_structure_c12', 'cheap_results_c12',
                          'cheap_trajectory_c12'}  # fmt: skip

    outputs = feed_back_candidates(training, evaluation, orm.Int(1), **evaluated_nodes(evaluation), **cheap)
    summary = outputs['summary'].get_dict()
    assert summary['cheap_pass_added'] == 3
    roles = {record.label: record.role for record in outputs['dataset']}
    assert (
        roles['round_1:cheap:c12'] == roles['round_1:cheap:c12:step0'] == roles['round_1:cheap:c12:step3'] == (LABELLED)
    )
    assert 'round_1:cheap:c3' not in roles
    steps = sum(len(value) for key, value in RELAXATION_STEPS.items() if key in CANDIDATES)
    assert outputs['dataset'].size == training.size + len(CANDIDATES) + steps + 3


def test_novelty_counts_the_minima_of_the_training_set_not_its_labelled_structures(round_of_candidates):
    training, evaluate = round_of_candidates
    copy_of_c3 = cubic_structure(*CANDIDATES['c3'][:3])
    for role, novel in ((LABELLED, True), (MINIMUM, False)):
        records = [*training.records(), to_record(copy_of_c3, energy=-8.0 * 3, role=role)]
        dataset = CrystalDatasetData(records).store()
        assert evaluate(dataset).get_dict()['c3']['is_novel'] is novel


def test_targets_larger_than_every_minimum_are_named():
    """The campaign warns where the generator must make cells larger than any real structure it learned from."""
    targets = [
        {'composition': 'NbO2', 'formula_units': 2},  # 6 atoms
        {'composition': 'Nb2O5', 'formula_units': 1},  # 7 atoms
        {'composition': 'Nb2O5', 'formula_units': 2},  # 14 atoms
    ]
    assert targets_beyond_minima(targets, 7) == ['Nb2O5x2']
    assert targets_beyond_minima(targets, 14) == []
    assert targets_beyond_minima(targets, 0) == ['NbO2x2', 'Nb2O5x1', 'Nb2O5x2']
    assert targets_beyond_minima([{'composition': 'NbO'}], 1) == ['NbOx1']  # one formula unit unless given


def test_later_rounds_train_more_steps_from_the_previous_model():
    class Model:
        step = 120

    assert continued_training({'steps': 50, 'batch_size': 8}, None) == {'steps': 50, 'batch_size': 8}
    assert continued_training({'steps': 50, 'batch_size': 8}, Model()) == {'steps': 170, 'batch_size': 8}


def test_rounds_come_from_the_protocol_and_are_positive():
    assert [CampaignWorkChain.get_protocol_inputs(name)['rounds'] for name in ('fast', 'balanced', 'precise')] == [
        1,
        2,
        3,
    ]
    assert CampaignWorkChain.get_protocol_inputs()['stop_without_new_sun'] is True
    assert validate_rounds(orm.Int(2), None) is None
    assert 'at least 1' in validate_rounds(orm.Int(0), None)
    with pytest.raises(ValueError, match='`rounds` must be a number'):
        CampaignWorkChain.get_protocol_inputs('fast', {'rounds': 'two'})


def _process_node(process_type: str, exit_status: int | None) -> orm.WorkflowNode:
    from plumpy import ProcessState

    node = orm.WorkflowNode(process_type=process_type)
    node.set_process_label(process_type.rpartition(':')[2])
    node.set_process_state(ProcessState.FINISHED if exit_status is not None else ProcessState.WAITING)
    if exit_status is not None:
        node.set_exit_status(exit_status)
    return node.store()


@pytest.mark.parametrize(
    ('process_type', 'exit_status', 'rounds', 'message'),
    [
        ('aiida.workflows:crystalgan.training', 0, 1, 'not a campaign'),
        (CampaignWorkChain.build_process_type(), 714, 1, 'did not finish successfully (exit status 714)'),
        (CampaignWorkChain.build_process_type(), None, 1, 'did not finish successfully (waiting)'),
        (CampaignWorkChain.build_process_type(), 0, 0, 'at least 1'),
        (CampaignWorkChain.build_process_type(), 0, 1, 'no `next_dataset`'),
    ],
)
def test_extension_refuses_what_cannot_be_extended(aiida_profile_clean, process_type, exit_status, rounds, message):
    node = _process_node(process_type, exit_status)
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        CampaignWorkChain.get_builder_extension(node, rounds)


def test_cli_extend_refuses_clearly(aiida_profile_clean):
    failed = _process_node(CampaignWorkChain.build_process_type(), 713)
    other = _process_node('aiida.workflows:crystalgan.training', 0)
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    for arguments, message in (
        ([str(failed.pk), '--rounds', '1'], 'did not finish successfully (exit status 713)'),
        ([str(other.pk), '--rounds', '1'], 'not a campaign'),
        ([str(failed.pk), '--rounds', '0'], 'must be at least 1, got 0'),
    ):
        result = CliRunner().invoke(cmd_root, ['campaign', 'extend', *arguments])
        assert result.exit_code == 2, result.output
        assert message in ' '.join(result.output.split())
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before
