"""The whole campaign at the smallest settings and two discovery rounds, through the daemon on the ZeroMQ profile, then
the CLI on it and one more round with `campaign extend`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from click.testing import CliRunner
from pymatgen.core import Structure

from aiida_crystalgan import tools
from aiida_crystalgan.calculations.generate import GenerateCalculation
from aiida_crystalgan.cli import cmd_root
from aiida_crystalgan.importers.cleaning import deduplicate_minima
from aiida_crystalgan.workflows.campaign import CampaignWorkChain
from aiida_crystalgan.workflows.generation import GenerationWorkChain
from aiida_crystalgan.workflows.phonons import PhononWorkChain
from aiida_crystalgan.workflows.quench import QuenchWorkChain
from aiida_crystalgan.workflows.sampling import SamplingWorkChain
from aiida_crystalgan.workflows.stability import StabilityWorkChain
from aiida_crystalgan.workflows.training import TrainingWorkChain

pytestmark = pytest.mark.slow

#: Two of the shipped known phases: bcc Nb (also a seed: its two minima merge) and NbO.
REFERENCES = [
    Path(__file__).parents[2] / 'examples' / 'references' / 'nb-o' / name for name in ('Nb-bcc.cif', 'NbO-Pm-3m.cif')
]


def invoke(*arguments: str):
    result = CliRunner().invoke(cmd_root, list(arguments), catch_exceptions=False)
    return result


def test_campaign_through_the_daemon(submit_and_await, mlip_code, train_code, generate_code, tiny_overrides, tmp_path):
    references = {
        path.stem.replace('-', '_'): orm.StructureData(pymatgen=Structure.from_file(path)) for path in REFERENCES
    }
    # six seeds (bcc Nb, O2, three NbO polymorphs, NbO2) and one validated candidate a round keep the run short
    overrides = tiny_overrides(seeds={'max_atoms': 3}, generation={'max_validations': 1})
    builder = CampaignWorkChain.get_builder_from_protocol(
        'Nb-O', mlip_code, train_code, generate_code, protocol='fast', overrides=overrides, references=references
    )
    builder.group_label = orm.Str('test/campaign')
    node = submit_and_await(builder, timeout=1800)
    assert node.is_finished_ok, node.exit_message

    # every stage ran as its own process
    labels = {n.process_class for n in node.called}
    assert {SamplingWorkChain, QuenchWorkChain, StabilityWorkChain, TrainingWorkChain, GenerationWorkChain} <= labels
    assert node.base.extras.get('crystalgan_stage') == 'finished'

    # the force-checked seeds went through the phonon check
    phonons = [n for n in node.called_descendants if n.process_class is PhononWorkChain]
    assert phonons and any(n.is_finished_ok for n in phonons)
    for phonon in (n for n in phonons if n.is_finished_ok):
        assert isinstance(phonon.outputs.min_frequency.value, float)

    # the training data: MD snapshots and relaxed structures (labelled) plus distinct local minima
    dataset = node.outputs.dataset
    assert dataset.base.attributes.get('has_forces')
    assert dataset.base.attributes.get('has_energies')
    assert dataset.num_minima >= 1 and dataset.num_labelled > dataset.num_minima
    assert all(np.isfinite(record.energy) and np.isfinite(record.forces).all() for record in dataset)
    assert any(record.label.startswith('quench:') for record in dataset)
    assert any(':step' in record.label for record in dataset), 'the steps of the relaxations are labelled data'
    kept, merged = deduplicate_minima(dataset.records(role='minimum'))
    assert len(kept) == dataset.num_minima and not merged  # no two minima are the same structure

    # the hull: relaxed seeds and references, listed with names
    phases = node.outputs.hull['phases']
    assert {'Nb', 'O2'} <= {phase['formula'] for phase in phases}

    # the physics head learned from those energies and forces: a finite loss at every logged step
    training = next(n for n in node.called if n.process_class is TrainingWorkChain)
    physics_loss = training.outputs.losses.get_array('physics_loss')
    assert physics_loss.size > 0 and np.isfinite(physics_loss).all()

    # validated structures: those that pass (local minimum in the E_hull window) in the group, the others in
    # `<group>/rejected` with a reason, all with their evaluation as extras; the funnel's metrics
    predicted = list(node.outputs.predicted.values()) if 'predicted' in node.outputs else []
    rejected = list(node.outputs.rejected.values()) if 'rejected' in node.outputs else []
    validated = predicted + rejected
    assert validated
    every_predicted = tools.predicted_structures(node).values()
    assert {n.uuid for n in orm.load_group('test/campaign').nodes} == {n.uuid for n in every_predicted}
    every_rejected = tools.rejected_structures(node).values()
    assert {n.uuid for n in orm.load_group('test/campaign/rejected').nodes} == {n.uuid for n in every_rejected}
    assert {n.base.extras.get('crystalgan_round') for n in [*every_predicted, *every_rejected]} == {1}
    assert all(n.base.extras.get('crystalgan_rejection_reason') for n in rejected)
    metrics = node.outputs.metrics.get_dict()
    assert set(metrics) == {'gan'} and metrics['gan']['n_relaxed'] == len(validated)
    for structure in validated:
        extras = structure.base.extras.all
        for key in (
            'formula',
            'spacegroup',
            'e_above_hull',
            'max_force',
            'is_local_minimum',
            'is_novel',
            'possible_new_ground_state',
        ):
            assert f'crystalgan_{key}' in extras
        assert isinstance(extras['crystalgan_e_above_hull'], float)

    # provenance: a predicted structure was created by a relaxation calculation of the engine
    creator = validated[0].base.links.get_incoming(link_type=LinkType.CREATE).one().node
    assert creator.process_type == 'aiida.calculations:crystalgan.mlip'

    # one round (the `fast` protocol's); its training set with the validated candidates is ready for the next
    rounds = node.outputs.rounds
    assert set(rounds) == {'round_1'}
    first = rounds['round_1']
    assert first['dataset'].uuid == dataset.uuid and node.outputs.next_dataset.uuid == first['next_dataset'].uuid
    # every validated candidate and the steps of its relaxation (the candidate as generated first) join the data, and
    # so do the cheap pass's short relaxations
    steps, cheap = first['summary']['relaxation_steps_added'], first['summary']['cheap_pass_added']
    assert first['next_dataset'].size == first['dataset'].size + len(first['evaluation'].get_dict()) + steps + cheap
    assert steps > 0 and any(record.label.endswith(':step0') for record in first['next_dataset'])
    assert cheap > 0 and any(record.label.startswith('round_1:cheap:') for record in first['next_dataset'])
    assert [row['round'] for row in tools.round_rows(node)] == [1]
    assert set(tools.campaign_cost(node)['round']) == {1}

    # the CLI on the finished campaign
    result = invoke('candidates', str(node.pk))
    assert result.exit_code == 0, result.output
    assert 'S.U.N. per relaxation' in result.output and 'new S.U.N.' in result.output

    result = invoke('trace', str(validated[0].pk))
    assert result.exit_code == 0, result.output
    assert 'TrainCalculation' in result.output and 'GenerateCalculation' in result.output
    assert 'operation `md`' in result.output

    result = invoke('report', str(node.pk), '--output-dir', str(tmp_path / 'report'))
    assert result.exit_code == 0, result.output
    report = (tmp_path / 'report' / 'report.md').read_text()
    assert 'Screening funnel and metrics' in report
    assert (tmp_path / 'report' / 'gan_losses.png').stat().st_size > 0
    assert ('Predicted structures' in report) == bool(predicted)

    result = invoke('campaign', 'status', str(node.pk))
    assert result.exit_code == 0 and 'finished' in result.output

    # one more round: a new campaign from the last training set, model and hull, without seeds, MD or quench
    result = invoke('campaign', 'extend', str(node.pk), '--rounds', '1')
    assert result.exit_code == 0, result.output
    extension = submit_and_await(tools.latest_campaign(), timeout=900)
    assert extension.pk != node.pk
    assert extension.is_finished_ok, extension.exit_message
    assert extension.inputs.previous.dataset.uuid == node.outputs.next_dataset.uuid
    assert extension.inputs.previous.model.uuid == node.outputs.model.uuid
    assert set(extension.inputs.previous.hull_structures) == set(node.outputs.hull_phases.structures)
    assert {n.process_class for n in extension.called} & {SamplingWorkChain, QuenchWorkChain} == set()
    # round 2 trained from round 1's model on round 1's training set with its validated candidates
    assert set(extension.outputs.rounds) == {'round_2'}
    second = extension.outputs.rounds['round_2']
    assert second['dataset'].uuid == first['next_dataset'].uuid
    assert second['model'].step == first['model'].step + tiny_overrides()['training']['config']['steps']
    second_training = next(n for n in extension.called if n.process_class is TrainingWorkChain)
    assert second_training.inputs.train.parent_model.uuid == first['model'].uuid
    assert set(tools.campaign_cost(extension)['round']) == {2}
    # round 2 drew new noise: the same draws would repeat round 1's candidates, now in the training set
    seeds = [
        next(n for n in campaign.called_descendants if n.process_class is GenerateCalculation).inputs.parameters['seed']
        for campaign in (node, extension)
    ]
    assert seeds[1] == seeds[0] + 1
