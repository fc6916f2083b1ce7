"""The documented ``verdi archive create`` recipe keeps a campaign's predicted structures, extras and provenance."""

from __future__ import annotations

from aiida import orm
from aiida.cmdline.commands.cmd_verdi import verdi
from aiida.tools.archive.abstract import get_format
from click.testing import CliRunner


def test_archive_recipe(finished_campaign, tmp_path):
    campaign = finished_campaign()
    group = orm.Group(label=f'crystalgan/Nb-O/{campaign.pk}').store()
    group.add_nodes(list(campaign.outputs.predicted.values()))
    path = tmp_path / f'campaign-{campaign.pk}.aiida'
    result = CliRunner().invoke(
        verdi, ['archive', 'create', str(path), '--nodes', str(campaign.pk), '--groups', group.label]
    )
    assert result.exit_code == 0, result.output

    with get_format().open(path, 'r') as reader:
        query = reader.querybuilder().append(orm.Group, filters={'label': group.label}, tag='group')
        query.append(orm.StructureData, with_group='group', project=['uuid', 'extras.crystalgan_e_above_hull'])
        archived = dict(query.all())
        assert archived == {
            node.uuid: node.base.extras.get('crystalgan_e_above_hull') for node in campaign.outputs.predicted.values()
        }
        # the evaluation's calcfunction with the reference phases it built the hull from
        query = reader.querybuilder().append(
            orm.CalcFunctionNode, filters={'attributes.function_name': 'evaluate_candidates'}, tag='evaluation'
        )
        query.append(orm.StructureData, with_outgoing='evaluation', edge_filters={'label': {'like': 'reference_%'}})
        assert query.count() == 3
