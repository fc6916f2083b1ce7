"""The ``aiida-crystalgan`` command line: set-up and bad input."""

from __future__ import annotations

from aiida import orm
from click.testing import CliRunner

from aiida_crystalgan.cli import cmd_root


def invoke(*arguments: str):
    return CliRunner().invoke(cmd_root, list(arguments))


def test_setup_creates_the_codes_once(aiida_localhost):
    for _ in range(2):
        result = invoke('setup', '--computer', aiida_localhost.label)
        assert result.exit_code == 0, result.output
    for label in ('crystalgan_mlip', 'crystalgan_train', 'crystalgan_generate'):
        code = orm.load_code(f'{label}@{aiida_localhost.label}')
        assert code.get_executable().name == label.replace('_', '-')


def test_submit_rejects_a_malformed_system(aiida_localhost):
    invoke('setup', '--computer', aiida_localhost.label)
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    result = invoke('campaign', 'submit', '--system', 'Nb-Qq', '--no-daemon')
    assert result.exit_code != 0
    assert "'Qq' is not an element symbol" in result.output
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_submit_rejects_unknown_codes():
    result = invoke('campaign', 'submit', '--system', 'Nb-O', '--engine-code', 'nope@nowhere', '--no-daemon')
    assert result.exit_code != 0
    assert 'engine code `nope@nowhere` not found' in result.output


def test_trace_without_md_upstream_fails_clearly():
    node = orm.StructureData(cell=[[3, 0, 0], [0, 3, 0], [0, 0, 3]])
    node.append_atom(position=(0, 0, 0), symbols='Nb')
    node.store()
    result = invoke('trace', str(node.pk))
    assert result.exit_code != 0
    assert 'no MD trajectory upstream' in result.output


def test_engine_choices_come_from_the_entry_points():
    result = invoke('campaign', 'submit', '--system', 'Nb-O', '--engine', 'castep', '--no-daemon')
    assert result.exit_code == 2
    assert "'castep' is not one of 'mlip', 'vasp'" in result.output


def test_commands_without_a_campaign_fail_clearly(aiida_profile_clean):
    for command in ('candidates', 'report'):
        result = invoke(command)
        assert result.exit_code != 0
        assert 'no campaign in this profile' in result.output


def test_progress_prints_the_new_reports_of_the_whole_call_tree(aiida_localhost, capsys):
    """`campaign submit --wait` prints each report once, from the campaign and from every process it called."""
    from aiida.common.links import LinkType

    from aiida_crystalgan.cli.campaign import print_progress

    campaign = orm.WorkflowNode().store()
    stage = orm.WorkflowNode()
    stage.base.links.add_incoming(campaign, LinkType.CALL_WORK, 'stage')
    stage.store()
    calculation = orm.CalcJobNode(computer=aiida_localhost)
    calculation.base.links.add_incoming(stage, LinkType.CALL_CALC, 'calculation')
    calculation.store()
    unrelated = orm.WorkflowNode().store()
    for node, message in ((campaign, 'campaign started'), (calculation, 'job done'), (unrelated, 'not ours')):
        node.logger.report(message)

    capsys.readouterr()  # the logger may echo reports itself
    last = print_progress(campaign, 0)
    assert printed(capsys) == ['campaign started', 'job done']
    assert print_progress(campaign, last) == last and printed(capsys) == []
    stage.logger.report('stage finished')
    capsys.readouterr()
    print_progress(campaign, last)
    assert printed(capsys) == ['stage finished']


def printed(capsys) -> list[str]:
    """The messages of the lines that :func:`print_progress` wrote (``HH:MM:SS [pk] message``)."""
    return [line.split('] ', 1)[1] for line in capsys.readouterr().out.splitlines() if line[:2].isdigit()]
