"""Queries on campaigns: the latest one, its predicted (and rejected) structures as rows or a DataFrame, the metrics of
its screening funnel, its hull and phonons, and the provenance path from a predicted structure back to the MD data of
its training set.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiida import orm
from aiida.common.links import LinkType

if TYPE_CHECKING:
    import pandas
    from pymatgen.analysis.phase_diagram import PhaseDiagram

# Column name → extra ``crystalgan_<name>`` of a predicted structure, in the order of the tables.
CANDIDATE_COLUMNS = (
    'formula',
    'spacegroup',
    'num_atoms',
    'e_above_hull',
    'energy_per_atom',
    'max_force',
    'min_frequency',
    'is_local_minimum',
    'is_novel',
    'rediscovered',
    'round',
)
#: Column of :func:`round_rows` → its name in tables, in order.
ROUND_COLUMNS = (
    ('round', 'round'),
    ('training_set', 'training set'),
    ('minima', 'minima'),
    ('model_step', 'model step'),
    ('generated', 'generated'),
    ('relaxed', 'relaxed'),
    ('predicted', 'predicted'),
    ('new_sun', 'new S.U.N.'),
    ('sun_rate_per_relaxation', 'S.U.N. per relaxation'),
)
#: Key of a funnel metric (:func:`aiida_crystalgan.analysis.metrics.funnel_metrics`) → its name in tables, in order.
METRIC_NAMES = (
    ('n_generated', 'generated'),
    ('n_structurally_valid', 'pass the fast filters'),
    ('n_unique', 'unique by fingerprint'),
    ('n_examined', 'post-processed (best ranked)'),
    ('n_cheap_pass', 'cheap engine pass'),
    ('n_relaxed', 'relaxed and checked in full'),
    ('n_local_minima', 'local minima'),
    ('n_passed', 'predicted (local minimum in the E_hull window)'),
    ('structural_validity', 'structural validity'),
    ('compositional_validity', 'compositional validity'),
    ('uniqueness', 'uniqueness'),
    ('novelty', 'novelty'),
    ('sun_rate_per_relaxation', 'S.U.N. per relaxation'),
    ('phonon_stable_fraction', 'phonon-stable fraction'),
    ('n_rediscovered', 'known phases rediscovered'),
    ('rediscovered_phases', 'rediscovered phases'),
)


def latest_campaign() -> orm.WorkflowNode | None:
    """The most recently created campaign of the loaded profile, or ``None``."""
    from aiida_crystalgan.workflows.campaign import CampaignWorkChain

    query = orm.QueryBuilder().append(CampaignWorkChain, tag='campaign')
    return query.order_by({'campaign': {'ctime': 'desc'}}).limit(1).first(flat=True)


def campaign_stage(campaign: orm.WorkflowNode) -> str:
    """The stage a campaign is in (the extra ``crystalgan_stage`` that the campaign updates as it goes)."""
    return campaign.base.extras.get('crystalgan_stage', 'created')


def _rounds(campaign: orm.WorkflowNode) -> dict[int, dict]:
    """The outputs of each discovery round (``rounds.round_<number>``) by round number, in order."""
    if 'rounds' not in campaign.outputs:
        return {}
    rounds = campaign.outputs.rounds
    return {int(name.removeprefix('round_')): rounds[name] for name in sorted(rounds, key=lambda n: int(n[6:]))}


def _structures_of_rounds(campaign: orm.WorkflowNode, namespace: str) -> dict[str, orm.StructureData]:
    """The structures of output ``namespace`` of every round (``round_<number>_<key>``), else of the campaign."""
    rounds = _rounds(campaign)
    if rounds:
        return {
            f'round_{number}_{key}': structure
            for number, outputs in rounds.items()
            if namespace in outputs
            for key, structure in outputs[namespace].items()
        }
    return dict(campaign.outputs[namespace]) if namespace in campaign.outputs else {}


def predicted_structures(campaign: orm.WorkflowNode) -> dict[str, orm.StructureData]:
    """The predicted structures of every round of ``campaign`` (``round_<number>_<key>``; by output key for a campaign
    from before discovery rounds); empty until its first generation stage has finished."""
    return _structures_of_rounds(campaign, 'predicted')


def rejected_structures(campaign: orm.WorkflowNode) -> dict[str, orm.StructureData]:
    """The validated candidates of every round that did not pass (extra ``crystalgan_rejection_reason``)."""
    return _structures_of_rounds(campaign, 'rejected')


def campaign_metrics(campaign: orm.WorkflowNode) -> dict:
    """The funnel metrics of the campaign's last round per arm (``gan``, and ``random`` with the control) and
    ``sun_rate_lift``; empty until its generation stage has finished.
    """
    return campaign.outputs.metrics.get_dict() if 'metrics' in campaign.outputs else {}


def round_rows(campaign: orm.WorkflowNode) -> list[dict]:
    """One row per discovery round (:data:`ROUND_COLUMNS`): its training set, model, funnel counts and new S.U.N.
    structures (``None`` where the round did not get that far)."""
    rows = []
    for number, outputs in _rounds(campaign).items():
        metrics = outputs['metrics'].get_dict().get('gan', {}) if 'metrics' in outputs else {}
        dataset = outputs.get('dataset')
        rows.append(
            {
                'round': number,
                'training_set': dataset.size if dataset is not None else None,
                'minima': dataset.num_minima if dataset is not None else None,
                'model_step': outputs['model'].step if 'model' in outputs else None,
                'generated': metrics.get('n_generated'),
                'relaxed': metrics.get('n_relaxed'),
                'predicted': metrics.get('n_passed'),
                'new_sun': outputs['summary']['n_new_sun'] if 'summary' in outputs else None,
                'sun_rate_per_relaxation': metrics.get('sun_rate_per_relaxation'),
            }
        )
    return rows


def round_table(campaign: orm.WorkflowNode) -> tuple[list[str], list[list]]:
    """Headers and rows of the table of discovery rounds (no rows for a campaign from before them)."""
    return [name for _, name in ROUND_COLUMNS], [[row[key] for key, _ in ROUND_COLUMNS] for row in round_rows(campaign)]


def metric_rows(metrics: dict) -> tuple[list[str], list[list]]:
    """Headers and rows of the metrics table: one row per :data:`METRIC_NAMES` entry, one column per arm."""
    arms = [arm for arm in ('gan', 'random') if arm in metrics]
    rows = [[name, *(metrics[arm].get(key) for arm in arms)] for key, name in METRIC_NAMES]
    if 'sun_rate_lift' in metrics:
        rows.append(['S.U.N. lift over random search', metrics['sun_rate_lift'], None])
    return ['metric', *arms], rows


def candidate_rows(campaign: orm.WorkflowNode) -> list[dict]:
    """One row per predicted structure (``pk``, ``uuid`` and :data:`CANDIDATE_COLUMNS`), lowest E above hull first."""
    rows = []
    for structure in predicted_structures(campaign).values():
        extras = structure.base.extras.all
        row = {'pk': structure.pk, 'uuid': structure.uuid}
        row.update({name: extras.get(f'crystalgan_{name}') for name in CANDIDATE_COLUMNS})
        rows.append(row)
    return sorted(rows, key=lambda row: (row['e_above_hull'] is None, row['e_above_hull'], row['pk']))


def candidates_frame(campaign: orm.WorkflowNode) -> pandas.DataFrame:
    """The predicted structures of ``campaign`` as a DataFrame indexed by PK, lowest energy above the hull first.

    Energies in eV/atom, forces in eV/Å, frequencies in THz (negative: imaginary).
    """
    import pandas

    columns = ['pk', 'uuid', *CANDIDATE_COLUMNS]
    return pandas.DataFrame(candidate_rows(campaign), columns=columns).set_index('pk')


def training_calculation(campaign: orm.WorkflowNode) -> orm.CalcJobNode | None:
    """The training CalcJob that created the campaign's GAN model (``None`` before the training stage)."""
    if 'model' not in campaign.outputs:
        return None
    return campaign.outputs.model.base.links.get_incoming(link_type=LinkType.CREATE).one().node


def _evaluation_inputs(campaign: orm.WorkflowNode) -> dict[str, orm.Data]:
    """The inputs of the calcfunction that evaluated the candidates (reference phases and relaxed candidates)."""
    if 'evaluation' not in campaign.outputs:
        return {}
    creator = campaign.outputs.evaluation.base.links.get_incoming(link_type=LinkType.CREATE).one().node
    return {link.link_label: link.node for link in creator.base.links.get_incoming(link_type=LinkType.INPUT_CALC)}


def phase_diagram(campaign: orm.WorkflowNode, with_candidates: bool = False) -> PhaseDiagram | None:
    """The convex hull of the campaign's relaxed reference phases (same engine), optionally with its candidates.

    ``None`` until the candidates have been evaluated. Candidates are added as entries named by their PK.
    """
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    inputs = _evaluation_inputs(campaign)
    if not inputs:
        return None
    entries = []
    for label, structure in inputs.items():
        prefix, _, key = label.partition('structure_')
        if label.startswith('reference_structure_') or (with_candidates and label.startswith('structure_')):
            energy = inputs[f'{prefix}results_{key}'].base.attributes.get('energy')
            name = structure.get_formula(mode='hill_compact') if prefix else f'<{structure.pk}>'
            entries.append(PDEntry(structure.get_pymatgen().composition.element_composition, energy, name=name))
    return PhaseDiagram(entries)


def phonon_calculation(structure: orm.StructureData) -> orm.WorkflowNode | None:
    """The latest successful phonon workchain of ``structure`` (``None`` when its phonons were not checked)."""
    from aiida_crystalgan.workflows.phonons import PhononWorkChain

    query = orm.QueryBuilder()
    query.append(orm.StructureData, filters={'id': structure.pk}, tag='structure')
    query.append(
        PhononWorkChain,
        with_incoming='structure',
        edge_filters={'label': 'structure'},
        tag='phonons',
        filters={'attributes.exit_status': 0},
    )
    return query.order_by({'phonons': {'ctime': 'desc'}}).limit(1).first(flat=True)


def _backward_path(start: orm.Node, is_target: Callable[[orm.Node, orm.Node], bool]) -> list[orm.Node] | None:
    """Shortest path from ``start`` back to the first node ``source`` for which ``is_target(source, child)`` holds.

    Walks backwards over CREATE and INPUT_CALC links only (data provenance); returns the nodes from ``start`` to the
    target, or ``None``.
    """
    parents: dict[int, orm.Node | None] = {start.pk: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for link in current.base.links.get_incoming(link_type=(LinkType.CREATE, LinkType.INPUT_CALC)).all():
            source = link.node
            if source.pk in parents:
                continue
            parents[source.pk] = current
            if is_target(source, current):
                path = [source]
                while path[-1] is not start:
                    path.append(parents[path[-1].pk])
                return list(reversed(path))
            queue.append(source)
    return None


def provenance_path_to_md(node: orm.Node) -> list[orm.Node] | None:
    """The provenance path from ``node`` through the GAN model that generated it to the MD calculations.

    First back to the nearest ``crystalgan.model`` (when there is one: seeds have none), then from that model back to
    a calculation that produced an MD trajectory of its training data. ``None`` when there is no such calculation.
    """
    from aiida_crystalgan.data.model import GanModelData

    def is_md(source: orm.Node, child: orm.Node) -> bool:
        return isinstance(source, orm.CalcJobNode) and isinstance(child, orm.TrajectoryData)

    to_model = _backward_path(node, lambda source, _: isinstance(source, GanModelData)) or [node]
    to_md = _backward_path(to_model[-1], is_md)
    return None if to_md is None else to_model[:-1] + to_md


def describe(node: orm.Node) -> str:
    """One line naming a node of a provenance path."""
    if isinstance(node, orm.ProcessNode):
        return f'{node.process_label}<{node.pk}> ({node.process_state.value if node.process_state else "?"})'
    label = f' "{node.label}"' if node.label else ''
    return f'{type(node).__name__}<{node.pk}>{label}'
