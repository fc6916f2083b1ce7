"""The cost ledger on a campaign-like graph of stored nodes whose calculations carry each source of wall time."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

SACCT = (
    'JobID|JobName|AllocCPUS|AllocTRES|ElapsedRaw|State|\n'
    '41|aiida-7|8|billing=8,cpu=8,gres/gpu=2,mem=16G,node=1|7200|COMPLETED|\n'
    '41.batch|batch|8|cpu=8,gres/gpu=2,mem=16G,node=1|7200|COMPLETED|\n'
)


def test_parse_sacct_takes_the_allocation_line():
    from aiida_crystalgan.tools.cost import parse_sacct

    accounting = parse_sacct(SACCT)
    assert accounting['JobID'] == '41'
    assert accounting['ElapsedRaw'] == '7200'
    assert parse_sacct('JobID|Elapsed|\n') == {}


@pytest.mark.parametrize(
    ('commands', 'gpus'),
    [
        ('#SBATCH --gres=gpu:2', 2),
        ('#SBATCH --gres=gpu:a100:4', 4),
        ('#SBATCH --gpus=3', 3),
        ('#SBATCH --gpus-per-node=1\n#SBATCH --exclusive', 1),
        ('#SBATCH --exclusive', 0),
        (None, 0),
    ],
)
def test_requested_gpus(commands, gpus):
    from aiida_crystalgan.tools.cost import requested_gpus

    assert requested_gpus(commands) == gpus


def _workflow(label: str, caller=None, call_label: str = 'CALL', outputs: dict | None = None):
    """A stored, running workflow node with ``label`` as process label, called by ``caller``."""
    from aiida import orm
    from aiida.common.links import LinkType
    from plumpy import ProcessState

    node = orm.WorkflowNode(process_type=f'aiida.workflows:test.{label.lower()}')
    node.set_process_label(label)
    node.set_process_state(ProcessState.FINISHED)
    node.set_exit_status(0)
    if caller is not None:
        node.base.links.add_incoming(caller, link_type=LinkType.CALL_WORK, link_label=call_label)
    node.store()
    for key, value in (outputs or {}).items():
        value.store().base.links.add_incoming(node, link_type=LinkType.RETURN, link_label=key)
    return node


def _calcjob(
    computer,
    caller,
    plugin: str,
    resources: dict,
    *,
    scheduler_commands: str = '',
    sacct: str | None = None,
    status_wall: float | None = None,
    last_job_wall: int | None = None,
):
    """A stored, finished CalcJob node of ``plugin`` under ``caller`` carrying the given sources of wall time."""
    import io

    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.schedulers.datastructures import JobInfo
    from plumpy import ProcessState

    node = orm.CalcJobNode(computer=computer, process_type=f'aiida.calculations:{plugin}')
    node.set_process_label(plugin)
    node.set_option('resources', resources)
    node.set_option('custom_scheduler_commands', scheduler_commands)
    node.set_process_state(ProcessState.FINISHED)
    node.set_exit_status(0)
    if sacct is not None:
        node.set_detailed_job_info({'retval': 0, 'stdout': sacct, 'stderr': ''})
    if last_job_wall is not None:
        info = JobInfo()
        info.job_id = '7'
        info.wallclock_time_seconds = last_job_wall
        node.set_last_job_info(info)
    node.base.links.add_incoming(caller, link_type=LinkType.CALL_CALC, link_label='CALL')
    node.store()
    if status_wall is not None:
        retrieved = orm.FolderData()
        status = {'status': 'ok', 'exit_code': 0, 'timing': {'wall_seconds': status_wall, 'cpu_seconds': 1.0}}
        retrieved.base.repository.put_object_from_filelike(io.StringIO(json.dumps(status)), 'results/status.json')
        retrieved.store().base.links.add_incoming(node, link_type=LinkType.CREATE, link_label='retrieved')
    return node


@pytest.fixture
def costed_campaign(aiida_localhost, tiny_candidates):
    """A campaign with training (Slurm accounting), generation (measured), validation (last job info), references
    (node times only), a screening calcfunction, and a random-search control arm (measured)."""
    from aiida import orm
    from aiida.common.links import LinkType
    from plumpy import ProcessState

    from aiida_crystalgan.workflows.campaign import CampaignWorkChain

    campaign = orm.WorkflowNode(process_type=CampaignWorkChain.build_process_type())
    campaign.set_process_label('CampaignWorkChain')
    campaign.base.links.add_incoming(orm.Str('Nb-O').store(), link_type=LinkType.INPUT_WORK, link_label='system')
    campaign.base.links.add_incoming(orm.Str('mlip').store(), link_type=LinkType.INPUT_WORK, link_label='engine__name')
    campaign.store()
    references = _workflow('StabilityWorkChain', campaign)
    engine = _workflow('MlipEngineWorkChain', references)
    _calcjob(aiida_localhost, engine, 'crystalgan.mlip', {'num_machines': 1, 'num_mpiprocs_per_machine': 1})
    training = _workflow('TrainingWorkChain', campaign)
    _calcjob(
        aiida_localhost,
        training,
        'crystalgan.train',
        {'num_machines': 1, 'num_mpiprocs_per_machine': 1},
        scheduler_commands='#SBATCH --gres=gpu:1',
        sacct=SACCT,
    )
    generation = _workflow(
        'GenerationWorkChain',
        campaign,
        outputs={
            'candidates': tiny_candidates(10),
            'evaluation': orm.Dict({'c1': {}, 'c2': {}}),
            'metrics': orm.Dict({'n_sun': 1, 'sun_rate': 0.1}),
        },
    )
    _calcjob(
        aiida_localhost,
        generation,
        'crystalgan.generate',
        {'num_machines': 1, 'num_mpiprocs_per_machine': 1},
        status_wall=36.0,
    )
    screening = orm.CalcFunctionNode(process_type='aiida_crystalgan.workflows.generation.postprocess_candidates')
    screening.set_process_label('postprocess_candidates')
    screening.set_process_state(ProcessState.FINISHED)
    screening.base.links.add_incoming(generation, link_type=LinkType.CALL_CALC, link_label='CALL')
    screening.store()
    validation = _workflow('StabilityWorkChain', generation)
    _calcjob(
        aiida_localhost,
        validation,
        'crystalgan.mlip',
        {'num_machines': 2, 'num_mpiprocs_per_machine': 4},
        last_job_wall=900,
    )
    control = _workflow(
        'RandomSearchWorkChain',
        campaign,
        call_label='random_search',
        outputs={
            'candidates': tiny_candidates(40),
            'evaluation': orm.Dict({f'r{i}': {} for i in range(4)}),
            'metrics': orm.Dict({'n_sun': 0}),
        },
    )
    _calcjob(aiida_localhost, control, 'crystalgan.mlip', {'tot_num_mpiprocs': 4}, status_wall=1800.0)
    return campaign


@pytest.fixture
def tiny_candidates():
    """Factory of an unstored dataset of ``count`` one-atom structures (what a generation stage outputs)."""

    def factory(count: int):
        from pymatgen.core import Lattice, Structure

        from aiida_crystalgan.data.dataset import CrystalDatasetData

        structure = Structure(Lattice.cubic(3.3), ['Nb'], [[0, 0, 0]])
        return CrystalDatasetData.from_structures([structure] * count)

    return factory


def test_ledger_takes_each_source_and_attributes_stages(costed_campaign):
    from aiida_crystalgan import tools

    ledger = tools.campaign_cost(costed_campaign)
    rows = {(row.stage, row.arm, row.engine): row for row in ledger.itertuples()}
    assert set(rows) == {
        ('references', 'gan', 'mlip'),
        ('training', 'gan', 'gan'),
        ('generation', 'gan', 'gan'),
        ('generation', 'gan', 'daemon'),
        ('validation', 'gan', 'mlip'),
        ('validation', 'random', 'mlip'),
    }
    training = rows['training', 'gan', 'gan']
    assert (training.source, training.wall_s, training.cores, training.gpus) == ('scheduler', 7200, 8, 2)
    assert (training.core_hours, training.gpu_hours) == (16.0, 4.0)
    generation = rows['generation', 'gan', 'gan']
    assert (generation.source, generation.wall_s, generation.cores) == ('measured', 36.0, 1)
    validation = rows['validation', 'gan', 'mlip']
    assert (validation.source, validation.cores, validation.core_hours) == ('scheduler', 8, 2.0)
    assert rows['validation', 'random', 'mlip'].core_hours == 2.0
    references = rows['references', 'gan', 'mlip']
    assert references.source == 'node-times'
    assert 0 <= references.wall_s < 60
    assert set(ledger['round']) == {1}


def test_summary_per_arm_and_gan_versus_engine(costed_campaign):
    from aiida_crystalgan import tools

    summary = tools.cost_summary(costed_campaign)
    gan, control = summary['gan'], summary['random']
    assert (gan['generated'], gan['validated'], gan['sun']) == (10, 2, 1)
    assert gan['core_hours'] == pytest.approx(18.01, rel=1e-3)
    assert gan['gpu_hours'] == pytest.approx(4.0)
    assert gan['core_hours_per_validated'] == pytest.approx(18.01 / 2, rel=1e-3)
    assert gan['core_hours_per_sun'] == pytest.approx(18.01, rel=1e-3)
    assert gan['screen_core_hours_per_candidate'] == pytest.approx(0.01 / 10, rel=1e-2)
    assert gan['engine_core_hours_per_candidate'] == pytest.approx(1.0)
    assert gan['engine_to_screen_ratio'] == pytest.approx(1000, rel=1e-2)
    assert (control['validated'], control['sun']) == (4, 0)
    assert control['core_hours_per_validated'] == pytest.approx(0.5)
    assert control['core_hours_per_sun'] is None
    assert control['screen_core_hours_per_candidate'] is None  # the control arm ran no screening calculation
    assert control['engine_to_screen_ratio'] is None


def test_stage_progress_counts_and_cost(costed_campaign):
    from aiida_crystalgan import tools

    progress = {row['stage']: row for row in tools.stage_progress(costed_campaign)}
    assert list(progress) == ['seeds', 'sampling', 'references', 'dataset', 'training', 'generation', 'random_search']
    assert progress['seeds']['state'] == 'pending'
    assert (progress['references']['done'], progress['references']['total']) == (2, 2)
    assert (progress['generation']['done'], progress['generation']['total']) == (4, 4)
    assert progress['training']['core_hours'] == 16.0
    assert progress['generation']['core_hours'] == pytest.approx(2.01, rel=1e-3)


def test_cost_command_and_report_section(costed_campaign, tmp_path):
    from aiida_crystalgan.cli import cmd_root
    from aiida_crystalgan.reporting import cost_section

    result = CliRunner().invoke(cmd_root, ['cost', str(costed_campaign.pk), '--csv', str(tmp_path / 'cost.csv')])
    assert result.exit_code == 0, result.output
    assert 'core-hours per S.U.N. structure' in result.output
    assert 'random arm' in result.output
    assert len((tmp_path / 'cost.csv').read_text().splitlines()) == 1 + 6
    status = CliRunner().invoke(cmd_root, ['campaign', 'status', str(costed_campaign.pk), '--no-tree'])
    assert status.exit_code == 0, status.output
    assert 'training' in status.output and '16' in status.output
    lines = cost_section(costed_campaign, tmp_path)
    assert '## Cost' in lines
    assert (tmp_path / 'cost.png').stat().st_size > 0
    heading = '| engine / (generate + screen) per candidate |'
    ratio = next(line for line in lines if line.startswith(heading)).split(' | ')
    assert 990 < float(ratio[1]) <= 1000  # the screening calcfunction adds its fraction of a second
    assert ratio[2] == 'n/a |'


def test_campaign_without_calculations_has_no_cost(finished_campaign):
    from aiida_crystalgan import tools
    from aiida_crystalgan.cli import cmd_root
    from aiida_crystalgan.reporting import cost_section

    campaign = finished_campaign()
    assert tools.campaign_cost(campaign).empty
    assert cost_section(campaign, None) == []
    result = CliRunner().invoke(cmd_root, ['cost', str(campaign.pk)])
    assert result.exit_code == 0
    assert 'no calculation' in result.output


def test_status_timing_measures_the_process_from_its_start():
    """The ``measured`` source: ``status.json`` timing counts from the process's start (as psutil sees it)."""
    import psutil

    from aiida_crystalgan.io.status import process_start_time, process_timing

    assert process_start_time() == pytest.approx(psutil.Process().create_time(), abs=1.0)
    timing = process_timing()
    assert timing['wall_seconds'] > 0
    assert timing['cpu_seconds'] > 0


def test_campaign_wait_shows_the_stages_done(costed_campaign):
    """``campaign wait`` on a campaign that has ended: its bar of stages, then the verdict."""
    from plumpy import ProcessState

    from aiida_crystalgan.cli import cmd_root

    costed_campaign.set_process_state(ProcessState.FINISHED)
    costed_campaign.set_exit_status(0)
    result = CliRunner().invoke(cmd_root, ['campaign', 'wait', str(costed_campaign.pk)])
    assert result.exit_code == 0, result.output
    assert f'campaign <{costed_campaign.pk}> stages' in result.output
    assert f'campaign <{costed_campaign.pk}> finished' in result.output


def test_costs_and_progress_by_round(aiida_localhost):
    """Each round's children (call links ``round_<number>_<stage>``) are its own: in the ledger and the progress."""
    from aiida import orm
    from aiida.common.links import LinkType

    from aiida_crystalgan import tools
    from aiida_crystalgan.workflows.campaign import CampaignWorkChain

    campaign = orm.WorkflowNode(process_type=CampaignWorkChain.build_process_type())
    campaign.set_process_label('CampaignWorkChain')
    for label, value in (('system', orm.Str('Nb-O')), ('engine__name', orm.Str('mlip')), ('rounds', orm.Int(2))):
        campaign.base.links.add_incoming(value.store(), link_type=LinkType.INPUT_WORK, link_label=label)
    campaign.store()
    for number in (1, 2):
        training = _workflow('TrainingWorkChain', campaign, call_label=f'round_{number}_training')
        resources = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        _calcjob(aiida_localhost, training, 'crystalgan.train', resources, sacct=SACCT)
    _workflow('GenerationWorkChain', campaign, call_label='round_2_generation')

    ledger = tools.campaign_cost(campaign)
    assert ledger['round'].tolist() == [1, 2]
    by_stage = tools.cost_by_stage(ledger)
    assert by_stage[by_stage['round'] == 2]['core_hours'].tolist() == [16.0]

    assert tools.planned_stages(campaign) == [(1, stage) for stage in tools.STAGE_ORDER] + [
        (2, 'training'),
        (2, 'generation'),
    ]
    progress = {(row['round'], row['stage']): row for row in tools.stage_progress(campaign)}
    assert list(progress) == tools.planned_stages(campaign)
    assert progress[1, 'seeds']['state'] == 'pending'
    assert progress[2, 'training']['core_hours'] == 16.0
    assert progress[2, 'generation']['state'] == 'finished'
    assert progress[1, 'training']['pk'] != progress[2, 'training']['pk']
