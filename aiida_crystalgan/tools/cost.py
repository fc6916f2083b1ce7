"""The cost ledger of a campaign: wall time, core-hours and GPU-hours of every calculation, by stage, round and engine.

Where each calculation's wall time comes from (the ``source`` of its :class:`CostRecord`), best first:

* ``scheduler``: the scheduler's accounting that AiiDA retrieved after the job (Slurm's ``sacct``: ``ElapsedRaw``,
  ``AllocCPUS``, ``gres/gpu`` of ``AllocTRES``), else the last job info that AiiDA polled while the job ran;
* ``measured``: the wall time that the plugin's own executables write into their ``status.json`` (``timing``);
* ``node-times``: creation to last modification of the node (coarse: includes queueing, upload and retrieval),
  creation to now while it runs.

Cores come from the accounting when present, else from the ``resources`` option; GPUs from the accounting, else
from a ``--gres=gpu:N`` or ``--gpus=N`` request in ``custom_scheduler_commands``. Calcfunctions run in a daemon
worker: one core, ``node-times``.

Stages are named after the campaign's direct child that (indirectly) called the calculation: ``seeds``,
``sampling``, ``references`` (relaxation and phonons of the seeds), ``dataset`` (merging the training set),
``training``, ``generation`` (the GAN's sampling and the screening calcfunctions) and ``validation`` (engine
calculations on generated candidates).
The ``engine`` column is ``gan`` for the GAN's own calculations, ``daemon`` for calcfunctions, else the campaign's
engine. The ``arm`` column is ``random`` for calculations under a child whose call link label or process label
names random search (the control arm), else ``gan``. The ``round`` column is the discovery round of the child, from
its call link label ``round_<number>_<stage>`` (training, generation and the feedback of the validated candidates into
the training set); the stages upstream of the first round (seeds to dataset) count in round 1.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import TYPE_CHECKING, Any

from aiida import orm
from aiida.common import timezone
from aiida.common.links import LinkType

from aiida_crystalgan.io.status import STATUS_FILE

if TYPE_CHECKING:
    import pandas

#: Columns of :func:`campaign_cost`, in order.
COST_COLUMNS = (
    'pk',
    'process_label',
    'stage',
    'arm',
    'round',
    'engine',
    'state',
    'wall_s',
    'cores',
    'gpus',
    'core_hours',
    'gpu_hours',
    'source',
)
GAN_PROCESS_TYPES = ('aiida.calculations:crystalgan.train', 'aiida.calculations:crystalgan.generate')
#: Process label of a campaign's direct child → stage name.
STAGE_OF_CHILD = {
    'SeedsWorkChain': 'seeds',
    'SamplingWorkChain': 'sampling',
    'StabilityWorkChain': 'references',
    'merge_training_data': 'dataset',
    'TrainingWorkChain': 'training',
    'GenerationWorkChain': 'generation',
    'feed_back_candidates': 'dataset',
}
#: Call link label of a campaign's child that belongs to a discovery round.
_ROUND_LABEL = re.compile(r'^round_(\d+)_')
_GPU_REQUEST = re.compile(r'--(?:gres=gpu(?::[\w.-]+)?:|gpus(?:-per-node)?=)(\d+)')
_TRES_GPUS = re.compile(r'gres/gpu(?::[\w.-]+)?=(\d+)')


@dataclasses.dataclass(frozen=True)
class CostRecord:
    """What one calculation cost: wall time (s), cores and GPUs it held, and where the wall time comes from."""

    wall_s: float
    cores: int
    gpus: int
    source: str

    @property
    def core_hours(self) -> float:
        return self.wall_s * self.cores / 3600

    @property
    def gpu_hours(self) -> float:
        return self.wall_s * self.gpus / 3600


def parse_sacct(text: str) -> dict[str, str]:
    """The job allocation's line (the first one) of ``sacct --parsable`` output, by field name; empty if none."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split('|'), lines[1].split('|')))


def _requested_cores(node: orm.CalcJobNode) -> int:
    resources = node.get_option('resources') or {}
    if resources.get('tot_num_mpiprocs'):
        cores = int(resources['tot_num_mpiprocs'])
    else:
        cores = int(resources.get('num_machines', 1)) * int(resources.get('num_mpiprocs_per_machine') or 1)
    return cores * int(resources.get('num_cores_per_mpiproc') or 1)


def requested_gpus(custom_scheduler_commands: str | None) -> int:
    """GPUs requested by ``--gres=gpu[:type]:N``, ``--gpus=N`` or ``--gpus-per-node=N`` (0 without a request)."""
    match = _GPU_REQUEST.search(custom_scheduler_commands or '')
    return int(match.group(1)) if match else 0


def _measured_seconds(node: orm.CalcJobNode) -> float | None:
    """The wall time that an executable of the plugin wrote into its retrieved ``status.json``."""
    retrieved = node.outputs.retrieved if 'retrieved' in node.outputs else None
    if retrieved is None:
        return None
    for path in retrieved.base.repository.glob():
        if path.name == STATUS_FILE:
            try:
                timing = json.loads(retrieved.base.repository.get_object_content(path)).get('timing', {})
            except (ValueError, AttributeError):
                return None
            return timing.get('wall_seconds')
    return None


def _node_seconds(node: orm.ProcessNode) -> float:
    """Creation to last change of a terminated process; creation to now of a running one."""
    end = node.mtime if node.is_terminated else timezone.now()
    return max((end - node.ctime).total_seconds(), 0.0)


def calcjob_cost(node: orm.CalcJobNode) -> CostRecord:
    """The :class:`CostRecord` of a CalcJob, from the best source available (see the module's documentation)."""
    cores, gpus = _requested_cores(node), requested_gpus(node.get_option('custom_scheduler_commands'))
    accounting = parse_sacct((node.get_detailed_job_info() or {}).get('stdout') or '')
    if accounting.get('ElapsedRaw', '').isdigit():
        tres = _TRES_GPUS.search(accounting.get('AllocTRES', ''))
        allocated = accounting.get('AllocCPUS', '')
        return CostRecord(
            float(accounting['ElapsedRaw']),
            int(allocated) if allocated.isdigit() else cores,
            int(tres.group(1)) if tres else gpus,
            'scheduler',
        )
    measured = _measured_seconds(node)
    if measured is not None:
        return CostRecord(float(measured), cores, gpus, 'measured')
    job_info = node.get_last_job_info()
    if job_info is not None and getattr(job_info, 'wallclock_time_seconds', None):
        return CostRecord(float(job_info.wallclock_time_seconds), cores, gpus, 'scheduler')
    return CostRecord(_node_seconds(node), cores, gpus, 'node-times')


def calculation_cost(node: orm.CalculationNode) -> CostRecord:
    """:func:`calcjob_cost` for a CalcJob; one core for its wall time for a calcfunction (it runs in the daemon)."""
    if isinstance(node, orm.CalcJobNode):
        return calcjob_cost(node)
    return CostRecord(_node_seconds(node), 1, 0, 'node-times')


def _child_call_label(child: orm.ProcessNode) -> str:
    links = child.base.links.get_incoming(link_type=(LinkType.CALL_WORK, LinkType.CALL_CALC)).all()
    return links[0].link_label if links else ''


def _stage_child(node: orm.ProcessNode, campaign: orm.ProcessNode) -> orm.ProcessNode | None:
    """The campaign's direct child that called ``node`` (``node`` itself when the campaign called it)."""
    while node.caller is not None and node.caller.pk != campaign.pk:
        node = node.caller
    return node if node.caller is not None else None


def child_round(child: orm.ProcessNode) -> int:
    """The discovery round of a campaign's direct child (1 for the stages upstream of the first round)."""
    match = _ROUND_LABEL.match(_child_call_label(child))
    return int(match.group(1)) if match else 1


def _is_random_arm(child: orm.ProcessNode) -> bool:
    return 'random' in f'{_child_call_label(child)} {child.process_label}'.lower()


def _engine_name(campaign: orm.ProcessNode) -> str:
    engine = campaign.inputs.engine if 'engine' in campaign.inputs else {}
    return engine['name'].value if 'name' in engine else 'engine'


def cost_rows(campaign: orm.ProcessNode) -> list[dict[str, Any]]:
    """One row (:data:`COST_COLUMNS`) per calculation that ``campaign`` called, directly or through its stages."""
    engine = _engine_name(campaign)
    rows = []
    for node in campaign.called_descendants:
        if not isinstance(node, orm.CalculationNode):
            continue
        child = _stage_child(node, campaign)
        if child is None:
            continue
        arm = 'random' if _is_random_arm(child) else 'gan'
        stage = STAGE_OF_CHILD.get(child.process_label, 'generation' if arm == 'random' else child.process_label)
        if isinstance(node, orm.CalcFunctionNode):
            node_engine = 'daemon'
        elif node.process_type in GAN_PROCESS_TYPES:
            node_engine = 'gan'
        else:
            node_engine = engine
            if stage == 'generation':
                stage = 'validation'
        record = calculation_cost(node)
        rows.append(
            {
                'pk': node.pk,
                'process_label': node.process_label,
                'stage': stage,
                'arm': arm,
                'round': child_round(child),
                'engine': node_engine,
                'state': node.process_state.value if node.process_state else 'unknown',
                'wall_s': record.wall_s,
                'cores': record.cores,
                'gpus': record.gpus,
                'core_hours': record.core_hours,
                'gpu_hours': record.gpu_hours,
                'source': record.source,
            }
        )
    return sorted(rows, key=lambda row: row['pk'])


def campaign_cost(campaign: orm.ProcessNode) -> pandas.DataFrame:
    """The cost ledger of ``campaign``: :func:`cost_rows` as a DataFrame indexed by PK (wall times in seconds)."""
    import pandas

    return pandas.DataFrame(cost_rows(campaign), columns=list(COST_COLUMNS)).set_index('pk')


def cost_by_stage(ledger: pandas.DataFrame) -> pandas.DataFrame:
    """Calculations, wall time, core-hours and GPU-hours summed per arm, round, stage and engine."""
    grouped = ledger.groupby(['arm', 'round', 'stage', 'engine'], sort=False)
    return grouped.agg(
        calculations=('wall_s', 'size'),
        wall_s=('wall_s', 'sum'),
        core_hours=('core_hours', 'sum'),
        gpu_hours=('gpu_hours', 'sum'),
    ).reset_index()


def _outcomes(nodes: list[orm.ProcessNode]) -> dict[str, int | None]:
    """Generated, validated and S.U.N. structures among the outputs of ``nodes`` (``None`` where unknown)."""
    generated = validated = sun = None
    for node in nodes:
        outputs = node.outputs
        if 'candidates' in outputs:
            generated = (generated or 0) + outputs.candidates.size
        if 'evaluation' in outputs:
            validated = (validated or 0) + len(outputs.evaluation.get_dict())
        if 'metrics' in outputs and outputs.metrics.get('n_sun') is not None:
            sun = (sun or 0) + int(outputs.metrics['n_sun'])
    return {'generated': generated, 'validated': validated, 'sun': sun}


def _per(total: float, count: int | None) -> float | None:
    return total / count if count else None


def cost_summary(campaign: orm.ProcessNode, ledger: pandas.DataFrame | None = None) -> dict[str, dict[str, Any]]:
    """Per arm (``gan``, and ``random`` when the campaign has a control arm): totals, outcomes and unit costs.

    Each arm's entry holds ``core_hours``, ``gpu_hours``, ``wall_s`` (summed over its calculations; the GAN arm
    includes the shared upstream stages), ``generated``, ``validated`` and ``sun`` structure counts (``None`` when
    unknown: S.U.N. counts come from a ``metrics`` output with ``n_sun``), ``core_hours_per_validated`` and
    ``core_hours_per_sun``, and the proposal's DFT-vs-GAN comparison: ``screen_core_hours_per_candidate`` (GAN
    sampling and screening, per generated candidate), ``engine_core_hours_per_candidate`` (engine validation, per
    validated candidate) and ``engine_to_screen_ratio``.
    """
    ledger = campaign_cost(campaign) if ledger is None else ledger
    children = {arm: [] for arm in ('gan', 'random')}
    for child in campaign.called:
        children['random' if _is_random_arm(child) else 'gan'].append(child)
    summary = {}
    for arm, nodes in children.items():
        rows = ledger[ledger['arm'] == arm]
        if arm == 'random' and rows.empty:
            continue
        outcomes = _outcomes(nodes)
        if arm == 'gan':  # what the stages do not say, the campaign's own outputs may
            exposed = _outcomes([campaign])
            outcomes = {key: exposed[key] if value is None else value for key, value in outcomes.items()}
        total = float(rows['core_hours'].sum())
        screen = float(rows[rows['stage'] == 'generation']['core_hours'].sum())
        engine = float(rows[rows['stage'] == 'validation']['core_hours'].sum())
        screen_per = _per(screen, outcomes['generated']) if screen else None  # None: no screening calculation
        engine_per = _per(engine, outcomes['validated'])
        summary[arm] = {
            'core_hours': total,
            'gpu_hours': float(rows['gpu_hours'].sum()),
            'wall_s': float(rows['wall_s'].sum()),
            **outcomes,
            'core_hours_per_validated': _per(total, outcomes['validated']),
            'core_hours_per_sun': _per(total, outcomes['sun']),
            'screen_core_hours_per_candidate': screen_per,
            'engine_core_hours_per_candidate': engine_per,
            'engine_to_screen_ratio': engine_per / screen_per if screen_per and engine_per is not None else None,
        }
    return summary


#: The campaign's stages in the order it runs them (the process labels of its direct children).
STAGE_ORDER = ('seeds', 'sampling', 'references', 'dataset', 'training', 'generation')
#: The stages that every discovery round runs.
ROUND_STAGES = ('training', 'generation')


def planned_stages(campaign: orm.ProcessNode) -> list[tuple[int, str]]:
    """``(round, stage)`` of every stage that ``campaign`` runs unless it stops early: :data:`STAGE_ORDER` in round 1,
    then :data:`ROUND_STAGES` in each later round; only the rounds' stages for a campaign that continues another."""
    rounds = campaign.inputs.rounds.value if 'rounds' in campaign.inputs else 1
    if 'previous' in campaign.inputs:
        first = campaign.inputs.previous.last_round.value + 1
        return [(number, stage) for number in range(first, first + rounds) for stage in ROUND_STAGES]
    later = [(number, stage) for number in range(2, rounds + 1) for stage in ROUND_STAGES]
    return [(1, stage) for stage in STAGE_ORDER] + later


def child_stage(child: orm.ProcessNode) -> tuple[int, str]:
    """``(round, stage)`` of a campaign's child process."""
    label = _child_call_label(child)
    return child_round(child), STAGE_OF_CHILD.get(child.process_label, label or child.process_label)


def stage_progress(campaign: orm.ProcessNode) -> list[dict[str, Any]]:
    """Per stage and round, in the order of :func:`planned_stages` (then any other child, e.g. a control arm): its
    process state, its sub-processes terminated (``done``) out of those submitted so far (``total``), and its
    core-hours and GPU-hours so far (running calculations count up to now). Stages not started yet have ``state``
    ``pending``.
    """
    progress = {
        (number, stage): {
            'stage': stage,
            'round': number,
            'pk': None,
            'state': 'pending',
            'done': 0,
            'total': 0,
            'core_hours': 0.0,
            'gpu_hours': 0.0,
        }
        for number, stage in planned_stages(campaign)
    }
    for child in sorted(campaign.called, key=lambda node: node.ctime):
        number, stage = child_stage(child)
        descendants = [child] if isinstance(child, orm.CalculationNode) else child.called_descendants
        records = [calculation_cost(node) for node in descendants if isinstance(node, orm.CalculationNode)]
        progress[number, stage] = {
            'stage': stage,
            'round': number,
            'pk': child.pk,
            'state': child.process_state.value if child.process_state else 'unknown',
            'done': sum(node.is_terminated for node in descendants),
            'total': len(descendants),
            'core_hours': sum(record.core_hours for record in records),
            'gpu_hours': sum(record.gpu_hours for record in records),
        }
    return list(progress.values())
