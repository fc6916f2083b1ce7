"""``crystalgan.quench``: MD snapshots relaxed to their nearest local minimum, as in MD → local minimum → database.

Every relaxed snapshot is ``labelled`` data (energy and forces of a configuration); a relaxed snapshot whose forces are
below the tolerance and which has no imaginary phonon mode is a ``minimum``; equivalent minima are merged, the lowest
energy kept. Most snapshots relax back to their seed: a relaxed snapshot equivalent to an already checked structure
(``known``) inherits its verdict, and of equivalent relaxed snapshots only one is checked; the others go through the
force check and phonons of ``crystalgan.stability``. The steps of each relaxation that the engine returns
(``trajectory_frames``) are ``labelled`` data too, but the first: it is the MD snapshot, already in the data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, if_

from aiida_crystalgan.data.dataset import LABELLED, MINIMUM, CrystalDatasetData, StructureRecord, to_record
from aiida_crystalgan.engines.base import expose_engine_inputs, submit_engine
from aiida_crystalgan.engines.outputs import read_results, read_trajectory, relaxation_trajectory
from aiida_crystalgan.workflows.protocols import ProtocolMixin
from aiida_crystalgan.workflows.seeds import link_label
from aiida_crystalgan.workflows.stability import StabilityWorkChain


def evenly_spaced(count: int, maximum: int) -> list[int]:
    """At most ``maximum`` frame indices out of ``count``, evenly spaced, the last included and the first (the
    starting structure) left out when there are other frames."""
    if count <= 1:
        return list(range(count))
    picks = np.round(np.linspace(count - 1, 1, min(maximum, count - 1))).astype(int)
    return sorted(set(picks.tolist()))


@calcfunction
def select_frames(max_snapshots: orm.Int, **trajectories: orm.TrajectoryData) -> dict[str, orm.StructureData]:
    """At most ``max_snapshots`` evenly spaced frames of each trajectory, as ``<trajectory>_f<frame>`` structures."""
    outputs = {}
    for key, trajectory in trajectories.items():
        for frame in evenly_spaced(trajectory.numsteps, max_snapshots.value):
            outputs[link_label(f'{key}_f{frame}')] = trajectory.get_step_structure(frame)
    return outputs


@calcfunction
def select_snapshots(snapshots: CrystalDatasetData, max_snapshots: orm.Int) -> dict[str, orm.StructureData]:
    """At most ``max_snapshots`` evenly spaced records of each trajectory of a snapshot dataset.

    A trajectory is the records of one ``source`` and label prefix (``<key>:<frame>`` as ``crystalgan.sampling``
    writes them), in the order of the dataset.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for index, record in enumerate(snapshots):
        groups.setdefault((record.source, record.label.rpartition(':')[0]), []).append(index)
    outputs = {}
    for (source, prefix), indices in groups.items():
        for frame in evenly_spaced(len(indices), max_snapshots.value):
            name = link_label(f'{prefix or source[:8]}_f{frame}')
            outputs[name] = snapshots.get_structuredata(indices[frame])
    return outputs


def relaxation_nodes(
    relaxed_structures: Mapping[str, orm.StructureData], results: Mapping[str, orm.ArrayData]
) -> dict[str, orm.Data]:
    """The outputs of a relaxation (engine or ``crystalgan.stability``) as ``structure_<key>``, ``results_<key>`` and,
    where the engine returned the relaxation's steps, ``trajectory_<key>``."""
    nodes = {}
    for key, structure in relaxed_structures.items():
        nodes[f'structure_{key}'] = structure
        nodes[f'results_{key}'] = results[key]
        trajectory = relaxation_trajectory(results[key])
        if trajectory is not None:
            nodes[f'trajectory_{key}'] = trajectory
    return nodes


def relaxation_steps(nodes: Mapping[str, orm.Data], origin: str, first: bool = True) -> list[StructureRecord]:
    """The steps of each relaxation (``trajectory_<key>`` of :func:`relaxation_nodes`) as ``labelled`` records
    ``<origin>:<key>:step<step>``; without the starting structure (step 0) when ``first`` is false."""
    records = []
    for name, trajectory in nodes.items():
        if not name.startswith('trajectory_'):
            continue
        key = name.removeprefix('trajectory_')
        steps = trajectory.get_stepids()
        for step, record in zip(steps, read_trajectory(trajectory)):
            if first or step > 0:
                records.append(to_record(record, role=LABELLED, label=f'{origin}:{key}:step{step}'))
    return records


def relaxed_records(
    summary: Mapping[str, Any], nodes: Mapping[str, orm.Data], origin: str
) -> Iterator[tuple[StructureRecord, bool]]:
    """Each relaxed structure (``structure_<key>``, ``results_<key>``) as a record, with its local-minimum verdict."""
    for name, structure in nodes.items():
        if not name.startswith('structure_'):
            continue
        key = name.removeprefix('structure_')
        record = to_record(
            structure, **read_results(nodes[f'results_{key}']), source=structure.uuid, label=f'{origin}:{key}'
        )
        yield record, bool(summary[key]['is_local_minimum'])


def split_roles(
    labelled: list[StructureRecord], minima: list[StructureRecord]
) -> tuple[list[StructureRecord], list[StructureRecord]]:
    """``(labelled, minima)``: equivalent minima merged (lowest energy per atom kept), the others labelled."""
    from aiida_crystalgan.importers.cleaning import deduplicate_minima

    kept, _ = deduplicate_minima(minima)
    kept = set(kept)
    unique = [to_record(record, role=MINIMUM) for index, record in enumerate(minima) if index in kept]
    merged = [to_record(record, role=LABELLED) for index, record in enumerate(minima) if index not in kept]
    return [to_record(record, role=LABELLED) for record in labelled] + merged, unique


def role_datasets(
    verdicts: Mapping[str, Any], nodes: Mapping[str, orm.Data], origin: str, first_steps: bool = True, **metadata: Any
) -> dict[str, CrystalDatasetData]:
    """``labelled`` and (deduplicated) ``minima`` datasets of relaxed structures, the relaxations' steps
    (:func:`relaxation_steps`) labelled; an empty one is left out."""
    labelled, minima = [], []
    for record, is_minimum in relaxed_records(verdicts, nodes, origin):
        (minima if is_minimum else labelled).append(record)
    steps = relaxation_steps(nodes, origin, first_steps)
    labelled, unique = split_roles([*labelled, *steps], minima)
    metadata = {
        'origin': f'relaxed structures ({origin})',
        'minima_found': len(minima),
        'minima_unique': len(unique),
        'relaxation_steps': len(steps),
        **metadata,
    }
    outputs = {}
    if labelled:
        outputs['labelled'] = CrystalDatasetData(labelled, metadata=metadata)
    if unique:
        outputs['minima'] = CrystalDatasetData(unique, metadata=metadata)
    return outputs


@calcfunction
def relaxed_datasets(summary: orm.Dict, origin: orm.Str, **nodes: orm.Data) -> dict[str, CrystalDatasetData]:
    """The relaxed structures of a ``crystalgan.stability`` run as ``labelled`` and (deduplicated) ``minima`` datasets.

    ``nodes`` holds ``structure_<key>`` (relaxed structure), ``results_<key>`` (its energy, forces and stress) and
    optionally ``trajectory_<key>`` (the relaxation's steps, labelled data); ``summary`` is the stability summary. A
    dataset without any structure is not returned.
    """
    return role_datasets(summary.get_dict(), nodes, origin.value)


@calcfunction
def checked_dataset(summary: orm.Dict, **nodes: orm.Data) -> CrystalDatasetData:
    """Every structure of a ``crystalgan.stability`` run with its verdict as role (``minimum`` or ``labelled``),
    equivalent minima not merged: the ``known`` structures of a quench. ``nodes`` as for :func:`relaxed_datasets`."""
    records = [
        to_record(record, role=MINIMUM if is_minimum else LABELLED)
        for record, is_minimum in relaxed_records(summary.get_dict(), nodes, 'checked')
    ]
    return CrystalDatasetData(records, metadata={'origin': 'structures checked by crystalgan.stability'})


def largest_force(record: StructureRecord) -> float:
    """The largest force on an atom of ``record`` (eV/Å); infinite without forces."""
    if record.forces is None or not len(record.forces):
        return np.inf
    return float(np.linalg.norm(record.forces, axis=1).max())


def match_relaxed(
    relaxed: Mapping[str, StructureRecord], known: list[StructureRecord], force_tolerance: float
) -> dict[str, dict[str, Any]]:
    """Which relaxed structures need a phonon check: per key, ``is_local_minimum`` (``None``: not known yet),
    ``known`` (label of the equivalent known structure) and ``checked_as`` (key of the structure checked in its place).

    A structure with forces above the tolerance is not a minimum. One equivalent (as in
    :func:`~aiida_crystalgan.importers.cleaning.deduplicate_minima`) to a known structure inherits its verdict: a known
    minimum (role ``minimum``) wins over a known non-minimum, and a known non-minimum counts only if its forces were
    below the tolerance (its verdict is then that of its phonons). Of equivalent unknown structures, the lowest in
    energy per atom is checked in place of all.
    """
    from aiida_crystalgan.importers.cleaning import deduplicate_minima

    matches: dict[str, dict[str, Any]] = {}
    candidates = []
    for key, record in relaxed.items():
        if largest_force(record) < force_tolerance:
            candidates.append(key)
        else:
            matches[key] = {'is_local_minimum': False, 'known': None, 'checked_as': None}
    known = [record for record in known if record.role == MINIMUM or largest_force(record) < force_tolerance]
    pool = [*known, *(relaxed[key] for key in candidates)]
    _, replaced = deduplicate_minima(pool)
    groups: dict[int, list[int]] = {}
    for index in range(len(pool)):
        groups.setdefault(replaced.get(index, index), []).append(index)
    for kept, members in groups.items():
        equivalent = sorted((index for index in members if index < len(known)), key=lambda i: known[i].role != MINIMUM)
        for index in (index for index in members if index >= len(known)):
            key = candidates[index - len(known)]
            if equivalent:
                reference = known[equivalent[0]]
                matches[key] = {
                    'is_local_minimum': reference.role == MINIMUM,
                    'known': reference.label,
                    'checked_as': None,
                }
            else:
                matches[key] = {'is_local_minimum': None, 'known': None, 'checked_as': candidates[kept - len(known)]}
    return matches


@calcfunction
def match_snapshots(force_tolerance: orm.Float, known: CrystalDatasetData | None = None, **nodes: orm.Data) -> orm.Dict:
    """:func:`match_relaxed` of the relaxed snapshots (``structure_<key>``, ``results_<key>``) against ``known``."""
    relaxed = {}
    for name, structure in nodes.items():
        if name.startswith('structure_'):
            key = name.removeprefix('structure_')
            relaxed[key] = to_record(structure, **read_results(nodes[f'results_{key}']))
    return orm.Dict(match_relaxed(relaxed, list(known or []), force_tolerance.value))


@calcfunction
def quenched_datasets(
    matches: orm.Dict, summary: orm.Dict | None = None, **nodes: orm.Data
) -> dict[str, CrystalDatasetData]:
    """The quenched snapshots as ``labelled`` and (deduplicated) ``minima`` datasets.

    The verdict of a snapshot is that of ``matches`` (:func:`match_snapshots`), else that of the structure checked in
    its place in the stability ``summary``. A snapshot equivalent to a known minimum is ``labelled``: the known one is
    the minimum. ``nodes`` as for :func:`relaxed_datasets`; the first step of each relaxation, the MD snapshot, is
    left out.
    """
    verdicts = {}
    for key, match in matches.get_dict().items():
        verdict = match['is_local_minimum']
        if verdict is None:
            verdict = summary[match['checked_as']]['is_local_minimum']
        verdicts[key] = {'is_local_minimum': bool(verdict) and match['known'] is None}
    matched = sum(match['known'] is not None for match in matches.get_dict().values())
    return role_datasets(verdicts, nodes, 'quench', first_steps=False, matched_known=matched)


def validate_inputs(inputs: dict[str, Any], _) -> str | None:
    """Snapshots come either as a dataset or as trajectories; at least one snapshot per trajectory."""
    if ('snapshots' in inputs) == bool(inputs.get('trajectories')):
        return 'give the MD snapshots either as `snapshots` (a dataset) or as `trajectories`, not both nor neither'
    if 'max_snapshots' in inputs and inputs['max_snapshots'].value < 1:
        return f'`max_snapshots` must be at least 1, got {inputs["max_snapshots"].value}'
    return None


class QuenchWorkChain(ProtocolMixin, WorkChain):
    """Relax a subsample of MD snapshots in one batch, check forces and phonons, and keep the distinct minima."""

    _protocol_file = 'quench.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            'snapshots',
            valid_type=CrystalDatasetData,
            required=False,
            help='MD snapshots as a dataset (e.g. the `snapshots` of `crystalgan.sampling`).',
        )
        spec.input_namespace(
            'trajectories',
            valid_type=orm.TrajectoryData,
            dynamic=True,
            required=False,
            help='MD trajectories (e.g. the `trajectories` of `crystalgan.sampling`).',
        )
        spec.input('max_snapshots', valid_type=orm.Int, help='Snapshots relaxed per trajectory, evenly spaced.')
        spec.input('stability', valid_type=orm.Dict, help='Parameters of `crystalgan.stability`.')
        spec.input(
            'known',
            valid_type=CrystalDatasetData,
            required=False,
            help='Structures already checked, role `minimum` or `labelled` as their verdict (e.g. '
            '`checked_dataset` of the relaxed seeds): an equivalent snapshot is not checked again.',
        )
        expose_engine_inputs(spec)
        spec.inputs.validator = validate_inputs
        spec.outline(cls.select, cls.relax, cls.match, if_(cls.should_check)(cls.check), cls.collect)
        spec.output(
            'labelled',
            valid_type=CrystalDatasetData,
            required=False,
            help='Every relaxed snapshot that is not a distinct minimum, with energy and forces.',
        )
        spec.output(
            'minima',
            valid_type=CrystalDatasetData,
            required=False,
            help='The distinct local minima (lowest energy of each group of equivalent structures).',
        )
        spec.exit_code(660, 'ERROR_STABILITY_FAILED', message='The relaxation and checks of the snapshots failed.')
        spec.exit_code(661, 'ERROR_RELAXATION_FAILED', message='The relaxation of the snapshots failed.')

    @classmethod
    def get_child_protocols(cls) -> dict[str, type[ProtocolMixin]]:
        """``stability`` is ``StabilityWorkChain``'s own protocol of the same name."""
        return {'stability': StabilityWorkChain}

    @classmethod
    def get_builder_from_protocol(
        cls,
        engine: dict[str, Any],
        snapshots: CrystalDatasetData | None = None,
        trajectories: dict[str, orm.TrajectoryData] | None = None,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        """A builder that quenches ``snapshots`` or ``trajectories`` with the parameters of ``protocol``.

        :param engine: the ``engine`` inputs (``code``, and optionally ``name``, ``protocol``, ``settings``...).
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        if snapshots is not None:
            builder.snapshots = snapshots
        if trajectories:
            builder.trajectories = trajectories
        builder.max_snapshots = orm.Int(inputs['max_snapshots'])
        builder.stability = orm.Dict(inputs['stability'])
        builder.engine = engine
        return builder

    def select(self) -> None:
        """Pick the snapshots to quench, through a calcfunction."""
        if 'snapshots' in self.inputs:
            self.ctx.selected = select_snapshots(self.inputs.snapshots, self.inputs.max_snapshots)
        else:
            self.ctx.selected = select_frames(self.inputs.max_snapshots, **self.inputs.trajectories)

    def relax(self):
        """Relax the selection in one engine call, with the relaxation parameters of the stability check."""
        node = submit_engine(self, 'relax', dict(self.ctx.selected), self.inputs.stability['relax'])
        self.report(f'relaxing {len(self.ctx.selected)} snapshots')
        return ToContext(relax=node)

    def match(self):
        """Match the relaxed snapshots against the known structures and among themselves, through a calcfunction."""
        node = self.ctx.relax
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_RELAXATION_FAILED
        self.ctx.nodes = relaxation_nodes(node.outputs.relaxed_structures, node.outputs.results)
        known = {'known': self.inputs.known} if 'known' in self.inputs else {}
        tolerance = orm.Float(self.inputs.stability['force_tolerance'])
        relaxed = {name: node for name, node in self.ctx.nodes.items() if not name.startswith('trajectory_')}
        self.ctx.matches = match_snapshots(tolerance, **known, **relaxed)
        matches = self.ctx.matches.get_dict()
        self.ctx.to_check = sorted({match['checked_as'] for match in matches.values() if match['checked_as']})
        matched = sum(match['known'] is not None for match in matches.values())
        self.report(
            f'{len(matches)} snapshots relaxed: {matched} equivalent to a known structure, '
            f'{len(self.ctx.to_check)} distinct ones to check'
        )
        return None

    def should_check(self) -> bool:
        return bool(self.ctx.to_check)

    def check(self):
        """Check forces and phonons of the distinct unknown snapshots (``crystalgan.stability``)."""
        structures = {key: self.ctx.nodes[f'structure_{key}'] for key in self.ctx.to_check}
        node = self.submit(
            StabilityWorkChain, structures=structures, parameters=self.inputs.stability, engine=dict(self.inputs.engine)
        )
        self.report(f'checking {len(structures)} quenched snapshots with {StabilityWorkChain.__name__}<{node.pk}>')
        return ToContext(stability=node)

    def collect(self):
        """Every relaxed snapshot as labelled data, the distinct new minima as a dataset of minima."""
        nodes = dict(self.ctx.nodes)
        summary = {}
        if self.ctx.to_check:
            node = self.ctx.stability
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_STABILITY_FAILED
            nodes.update(relaxation_nodes(node.outputs.relaxed_structures, node.outputs.results))
            summary = {'summary': node.outputs.summary}
        datasets = quenched_datasets(self.ctx.matches, **summary, **nodes)
        for name, dataset in datasets.items():
            self.out(name, dataset)
        metadata = next(iter(datasets.values())).metadata
        self.report(
            f'{len(self.ctx.matches.get_dict())} snapshots quenched: {metadata["matched_known"]} equivalent to a '
            f'known structure, {len(self.ctx.to_check)} checked, {metadata["minima_found"]} new local minima, '
            f'{metadata["minima_unique"]} distinct; {metadata["relaxation_steps"]} relaxation steps as labelled data'
        )
        return None
