"""``crystalgan.quench``: MD snapshots relaxed to their nearest local minimum, as in MD → local minimum → database.

Every relaxed snapshot is ``labelled`` data (energy and forces of a configuration); a relaxed snapshot whose forces are
below the tolerance and which has no imaginary phonon mode is a ``minimum``; equivalent minima are merged, the lowest
energy kept. The relaxation, force check and phonons are those of ``crystalgan.stability``. The engines return the final
structure of a relaxation, not its intermediate steps: only final structures become data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction

from aiida_crystalgan.data.dataset import LABELLED, MINIMUM, CrystalDatasetData, StructureRecord, to_record
from aiida_crystalgan.engines.base import expose_engine_inputs
from aiida_crystalgan.engines.outputs import read_results
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


def relaxed_records(summary: Mapping[str, Any], nodes: Mapping[str, orm.Data], origin: str
                    ) -> Iterator[tuple[StructureRecord, bool]]:
    """Each relaxed structure (``structure_<key>``, ``results_<key>``) as a record, with its local-minimum verdict."""
    for name, structure in nodes.items():
        if not name.startswith('structure_'):
            continue
        key = name.removeprefix('structure_')
        record = to_record(structure, **read_results(nodes[f'results_{key}']), source=structure.uuid,
                           label=f'{origin}:{key}')
        yield record, bool(summary[key]['is_local_minimum'])


def split_roles(labelled: list[StructureRecord], minima: list[StructureRecord]
                ) -> tuple[list[StructureRecord], list[StructureRecord]]:
    """``(labelled, minima)``: equivalent minima merged (lowest energy per atom kept), the others labelled."""
    from aiida_crystalgan.importers.cleaning import deduplicate_minima

    kept, _ = deduplicate_minima(minima)
    kept = set(kept)
    unique = [to_record(record, role=MINIMUM) for index, record in enumerate(minima) if index in kept]
    merged = [to_record(record, role=LABELLED) for index, record in enumerate(minima) if index not in kept]
    return [to_record(record, role=LABELLED) for record in labelled] + merged, unique


@calcfunction
def relaxed_datasets(summary: orm.Dict, origin: orm.Str, **nodes: orm.Data) -> dict[str, CrystalDatasetData]:
    """The relaxed structures of a ``crystalgan.stability`` run as ``labelled`` and (deduplicated) ``minima`` datasets.

    ``nodes`` holds ``structure_<key>`` (relaxed structure) and ``results_<key>`` (its energy, forces and stress);
    ``summary`` is the stability summary. A dataset without any structure is not returned.
    """
    verdicts = summary.get_dict()
    labelled, minima = [], []
    for record, is_minimum in relaxed_records(verdicts, nodes, origin.value):
        (minima if is_minimum else labelled).append(record)
    labelled, unique = split_roles(labelled, minima)
    metadata = {'origin': f'relaxed structures ({origin.value})', 'minima_found': len(minima),
                'minima_unique': len(unique)}
    outputs = {}
    if labelled:
        outputs['labelled'] = CrystalDatasetData(labelled, metadata=metadata)
    if unique:
        outputs['minima'] = CrystalDatasetData(unique, metadata=metadata)
    return outputs


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
        spec.input('snapshots', valid_type=CrystalDatasetData, required=False,
                   help='MD snapshots as a dataset (e.g. the `snapshots` of `crystalgan.sampling`).')
        spec.input_namespace('trajectories', valid_type=orm.TrajectoryData, dynamic=True, required=False,
                             help='MD trajectories (e.g. the `trajectories` of `crystalgan.sampling`).')
        spec.input('max_snapshots', valid_type=orm.Int, help='Snapshots relaxed per trajectory, evenly spaced.')
        spec.input('stability', valid_type=orm.Dict, help='Parameters of `crystalgan.stability`.')
        expose_engine_inputs(spec)
        spec.inputs.validator = validate_inputs
        spec.outline(cls.select, cls.relax_and_check, cls.collect)
        spec.output('labelled', valid_type=CrystalDatasetData, required=False,
                    help='Every relaxed snapshot that is not a distinct minimum, with energy and forces.')
        spec.output('minima', valid_type=CrystalDatasetData, required=False,
                    help='The distinct local minima (lowest energy of each group of equivalent structures).')
        spec.exit_code(660, 'ERROR_STABILITY_FAILED', message='The relaxation and checks of the snapshots failed.')

    @classmethod
    def get_override_keys(cls) -> dict[str, Any]:
        """The protocol's keys, and those of the stability protocol under ``stability``."""
        return {**super().get_override_keys(), 'stability': StabilityWorkChain.get_override_keys()}

    @classmethod
    def get_protocol_inputs(cls, protocol: str | None = None,
                            overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``quench.yaml`` with the ``stability`` of ``StabilityWorkChain``'s own protocol of the same name."""
        overrides = dict(overrides or {})
        stability = StabilityWorkChain.get_protocol_inputs(protocol, overrides.pop('stability', None))
        return {**super().get_protocol_inputs(protocol, overrides), 'stability': stability}

    @classmethod
    def get_builder_from_protocol(cls, engine: dict[str, Any], snapshots: CrystalDatasetData | None = None,
                                  trajectories: dict[str, orm.TrajectoryData] | None = None,
                                  protocol: str | None = None, overrides: dict[str, Any] | None = None):
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

    def relax_and_check(self):
        """Relax the selection in one engine call, then check forces and phonons (``crystalgan.stability``)."""
        inputs = {'structures': self.ctx.selected, 'parameters': self.inputs.stability,
                  'engine': dict(self.inputs.engine)}
        node = self.submit(StabilityWorkChain, **inputs)
        self.report(f'quenching {len(self.ctx.selected)} snapshots with {StabilityWorkChain.__name__}<{node.pk}>')
        return ToContext(stability=node)

    def collect(self):
        """Every relaxed snapshot as labelled data, the distinct minima as a dataset of minima."""
        node = self.ctx.stability
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_STABILITY_FAILED
        nodes = {}
        for key, structure in node.outputs.relaxed_structures.items():
            nodes[f'structure_{key}'] = structure
            nodes[f'results_{key}'] = node.outputs.results[key]
        datasets = relaxed_datasets(node.outputs.summary, orm.Str('quench'), **nodes)
        for name, dataset in datasets.items():
            self.out(name, dataset)
        found = sum(verdict['is_local_minimum'] for verdict in node.outputs.summary.get_dict().values())
        distinct = datasets['minima'].size if 'minima' in datasets else 0
        self.report(f'{len(nodes) // 2} snapshots quenched: {found} local minima, {distinct} distinct')
        return None
