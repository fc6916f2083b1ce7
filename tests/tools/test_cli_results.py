"""``aiida-crystalgan candidates|report`` on a finished campaign: table, export and report files."""

from __future__ import annotations

from click.testing import CliRunner

from aiida_crystalgan.cli import cmd_root


def invoke(*arguments: str):
    return CliRunner().invoke(cmd_root, list(arguments))


def test_candidates_table_and_pks(finished_campaign):
    campaign = finished_campaign()
    result = invoke('candidates', str(campaign.pk))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert 'e_hull (eV/atom)' in lines[0]
    assert 'NbO2' in lines[2] and 'NbO ' in lines[3]  # lowest energy above the hull first
    metrics = {line.split('  ')[0]: line.split()[-1] for line in lines[5:]}
    assert metrics['generated'] == '40' and metrics['structural validity'] == '0.750'
    assert metrics['cheap engine pass'] == '3' and metrics['relaxed and checked in full'] == '2'
    pks = invoke('candidates', '--pks-only').output.split()  # default: the latest campaign
    assert pks == [
        str(node.pk)
        for node in sorted(
            campaign.outputs.predicted.values(), key=lambda node: node.base.extras.get('crystalgan_e_above_hull')
        )
    ]


def test_candidates_export(finished_campaign, tmp_path):
    campaign = finished_campaign()
    target = tmp_path / 'export'
    result = invoke('candidates', str(campaign.pk), '--export', str(target), '--format', 'poscar')
    assert result.exit_code == 0, result.output
    assert '2 structures written' in result.output
    assert sorted(path.suffix for path in target.iterdir()) == ['.csv', '.vasp', '.vasp']

    result = invoke('candidates', str(campaign.pk), '--export', str(target))
    assert result.exit_code != 0
    assert 'is not empty' in result.output and '--force' in result.output
    assert 'Traceback' not in result.output
    result = invoke('candidates', str(campaign.pk), '--export', str(target), '--force')
    assert result.exit_code == 0, result.output
    assert len(list(target.glob('*.cif'))) == 2


def test_candidates_export_unknown_format(finished_campaign, tmp_path):
    campaign = finished_campaign()
    result = invoke('candidates', str(campaign.pk), '--export', str(tmp_path / 'x'), '--format', 'pdb')
    assert result.exit_code == 2
    assert "'pdb' is not one of 'cif', 'poscar', 'extxyz'" in result.output
    assert not (tmp_path / 'x').exists()


def test_report(finished_campaign, tmp_path):
    campaign = finished_campaign()
    result = invoke('report', str(campaign.pk), '--output-dir', str(tmp_path / 'report'))
    assert result.exit_code == 0, result.output
    report = (tmp_path / 'report' / 'report.md').read_text()
    assert '## Predicted structures' in report and '| NbO2 |' in report
    assert '## Screening funnel and metrics' in report and '| uniqueness | 0.667 |' in report
    for name in ('dataset.png', 'e_above_hull.png', 'convex_hull.png', 'structures.png'):
        assert f']({name})' in report
        assert (tmp_path / 'report' / name).read_bytes().startswith(b'\x89PNG')
