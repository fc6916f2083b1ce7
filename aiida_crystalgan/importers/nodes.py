"""Build datasets from AiiDA nodes, keeping them in the provenance graph.

:func:`build_dataset_from_nodes` is a calcfunction: its inputs are the ``StructureData``/``TrajectoryData`` (and the
engines' ``results`` ``ArrayData``) the dataset is made of, so every structure of the dataset links back to the node
it came from. :func:`import_group` collects those nodes from a group of structures or of finished engine processes
(outputs ``results.<key>``, ``relaxed_structures.<key>``, ``trajectories.<key>``, see ``engines/base.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import ExitCode, calcfunction

from aiida_crystalgan.data.dataset import CrystalDatasetData, to_record
from aiida_crystalgan.engines.outputs import read_results, read_trajectory
from aiida_crystalgan.io.datafile import StructureRecord

from .cleaning import CleaningOptions, build_dataset

__all__ = ('build_dataset_from_nodes', 'collect_group_nodes', 'import_group', 'records_from_nodes')

_NODE_OPTIONS = ('splits', 'folds', 'seed', 'group_by')


def records_from_nodes(
    structures: dict[str, orm.Data],
    results: dict[str, orm.ArrayData] | None = None,
) -> Iterator[StructureRecord]:
    """Records of ``structures`` (StructureData or TrajectoryData), with energy/forces/stress of ``results[key]``."""
    results = results or {}
    unknown = set(results) - set(structures)
    if unknown:
        raise ValueError(f'results {sorted(unknown)} have no structure of the same key')
    for key, node in structures.items():
        if isinstance(node, orm.TrajectoryData):
            yield from read_trajectory(node)
        elif isinstance(node, orm.StructureData):
            yield to_record(node, label=node.label or key, **read_results(results.get(key)))
        else:
            raise TypeError(f'`structures.{key}` is a {type(node).__name__}: give StructureData or TrajectoryData')


@calcfunction
def build_dataset_from_nodes(parameters: orm.Dict | None = None, **nodes) -> CrystalDatasetData:
    """Build a ``CrystalDatasetData`` from the nodes of the namespaces ``structures`` and ``results``.

    :param parameters: optional ``metadata`` (dict), ``cleaning`` (``CleaningOptions`` as a dict), ``splits``,
        ``folds``, ``seed``, ``group_by``.
    :param nodes: ``structures.<key>``: StructureData or TrajectoryData; ``results.<key>``: ArrayData with the
        ``energy`` attribute and ``forces``/``stress`` arrays of ``structures.<key>``.
    :returns: the dataset, or exit code 300 for invalid inputs (no dataset is created then).
    """
    unknown = set(nodes) - {'structures', 'results'}
    if unknown:
        return ExitCode(300, f'unknown input namespaces {sorted(unknown)}: use `structures` and `results`')
    if not nodes.get('structures'):
        return ExitCode(300, 'the `structures` namespace is empty')
    options = dict(parameters.get_dict()) if parameters is not None else {}
    cleaning = options.pop('cleaning', None)
    metadata = {'provider': 'aiida', **options.pop('metadata', {})}
    node_options = {key: options.pop(key) for key in _NODE_OPTIONS if key in options}
    if options:
        return ExitCode(300, f'unknown parameters {sorted(options)}')
    try:
        records = records_from_nodes(nodes['structures'], nodes.get('results'))
        options = CleaningOptions.from_dict(cleaning) if cleaning else None
        return build_dataset(records, metadata, options, **node_options)
    except (TypeError, ValueError) as exception:
        return ExitCode(300, f'invalid inputs: {exception}')


def _outputs(process: orm.ProcessNode, namespace: str) -> dict[str, orm.Node]:
    links = process.base.links.get_outgoing(
        link_type=(LinkType.CREATE, LinkType.RETURN), link_label_filter=f'{namespace}__%'
    ).all()
    return {link.link_label[len(namespace) + 2 :]: link.node for link in links}


def _inputs(process: orm.ProcessNode, namespace: str) -> dict[str, orm.Node]:
    links = process.base.links.get_incoming(link_label_filter=f'{namespace}__%').all()
    return {link.link_label[len(namespace) + 2 :]: link.node for link in links}


def collect_group_nodes(group: orm.Group) -> tuple[dict[str, orm.Data], dict[str, orm.ArrayData], list[dict]]:
    """The ``structures``/``results`` inputs of :func:`build_dataset_from_nodes` for the nodes of ``group``.

    Structures and trajectories are taken as they are; of finished engine processes, the ``trajectories`` (MD, or the
    steps of a relaxation), the ``relaxed_structures`` (or the input ``structures``) with their ``results``. Other
    nodes are skipped and listed.
    """
    structures: dict[str, orm.Data] = {}
    results: dict[str, orm.ArrayData] = {}
    skipped: list[dict] = []
    for node in group.nodes:
        if isinstance(node, orm.StructureData | orm.TrajectoryData):
            structures[f'n{node.pk}'] = node
        elif isinstance(node, orm.ProcessNode):
            if not node.is_finished_ok:
                skipped.append(
                    {
                        'pk': node.pk,
                        'reason': f'process not finished ok ({node.process_state}, exit status {node.exit_status})',
                    }
                )
                continue
            found = _outputs(node, 'trajectories')
            relaxed = _outputs(node, 'relaxed_structures')
            kind = 'steps' if relaxed else 'md'  # the steps of a relaxation, or an MD trajectory
            structures.update({f'n{node.pk}_{key}_{kind}': traj for key, traj in found.items()})
            node_results = _outputs(node, 'results')
            initial = _inputs(node, 'structures')
            for key, result in node_results.items():
                structure = relaxed.get(key, initial.get(key))
                if structure is None:
                    skipped.append({'pk': node.pk, 'reason': f'results.{key} has no structure'})
                    continue
                structures[f'n{node.pk}_{key}'] = structure
                results[f'n{node.pk}_{key}'] = result
            if not found and not node_results:
                skipped.append({'pk': node.pk, 'reason': 'no `trajectories` or `results` outputs'})
        else:
            skipped.append({'pk': node.pk, 'reason': f'unsupported node type {type(node).__name__}'})
    return structures, results, skipped


def import_group(group: orm.Group | str, parameters: dict[str, Any] | None = None) -> CrystalDatasetData:
    """Run :func:`build_dataset_from_nodes` on the nodes of ``group`` (a group or its label); return the stored node."""
    group = group if isinstance(group, orm.Group) else orm.load_group(group)
    structures, results, skipped = collect_group_nodes(group)
    if not structures:
        raise ValueError(
            f'group `{group.label}` holds no structure, trajectory or finished engine process '
            f'({len(skipped)} nodes skipped: {skipped[:5]})'
        )
    parameters = dict(parameters or {})
    parameters['metadata'] = {
        'group': group.label,
        'group_uuid': group.uuid,
        'skipped_nodes': skipped,
        **parameters.get('metadata', {}),
    }
    namespaces = {'structures': structures, **({'results': results} if results else {})}
    dataset, process = build_dataset_from_nodes.run_get_node(parameters=orm.Dict(parameters), **namespaces)
    if not process.is_finished_ok:
        raise ValueError(f'building the dataset of group `{group.label}` failed: {process.exit_message}')
    return dataset
