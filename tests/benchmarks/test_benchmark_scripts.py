"""The leave-phases-out benchmark scripts: their command-line checks and the recovery walk (no CHGNet, no data).

The benchmark itself runs for hours and is not part of the suite; these tests cover the parts of it that decide what
a run means: which arguments it accepts, and how recovery@N beyond the relaxations of the metrics is measured.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from pymatgen.core import Lattice, Structure

sys.path.append(str(Path(__file__).resolve().parents[2] / 'benchmarks'))

import cheap_pass_dedupe  # noqa: E402
import leave_phases_out as lpo  # noqa: E402
import near_hull_reach  # noqa: E402

from aiida_crystalgan.analysis.matching import make_matcher  # noqa: E402
from aiida_crystalgan.analysis.postprocess import PostprocessOptions  # noqa: E402
from aiida_crystalgan.analysis.screening import Selection  # noqa: E402

REQUIRED = ['--data-dir', 'nowhere']


@pytest.mark.parametrize('name', ['', '.', '..', 'a/b', '../up', '/abs', 'a\\b'])
def test_report_name_must_be_a_plain_file_name(name):
    with pytest.raises(argparse.ArgumentTypeError, match='plain file name'):
        lpo.file_stem(name)
    with pytest.raises(SystemExit):
        lpo.parse_args([*REQUIRED, '--report-name', name])


def test_report_name_defaults_by_kind_of_run():
    assert lpo.report_name(lpo.parse_args(REQUIRED)) == 'leave_phases_out'
    assert lpo.report_name(lpo.parse_args([*REQUIRED, '--validation', 'Nb2O3'])) == 'leave_phases_out_validation'
    assert lpo.report_name(lpo.parse_args([*REQUIRED, '--report-name', 'variant'])) == 'variant'


@pytest.mark.parametrize(('text', 'message'), [('0', 'positive'), ('-1', 'positive'), ('x', 'not a number')])
def test_positive_number_refuses_others(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        lpo.positive_number(text)


@pytest.mark.parametrize(
    ('flag', 'value', 'message'),
    [
        ('--relaxations', '0', 'at least 1'),
        ('--recovery-at', '-5', 'at least 1'),
        ('--candidates', '2.5', 'not an integer'),
        ('--cheap-pass', '-1', 'at least 0'),
        ('--seeds', '-1', 'at least 0'),
        ('--train-seconds', '0', 'positive'),
    ],
)
def test_counts_and_sizes_must_be_in_range(flag, value, message, capsys):
    with pytest.raises(SystemExit):
        lpo.parse_args([*REQUIRED, flag, value])
    assert message in capsys.readouterr().err


def test_counts_in_range_are_accepted():
    args = lpo.parse_args([*REQUIRED, '--relaxations', '1', '--recovery-at', '1', '100', '--cheap-pass', '0'])
    assert (args.relaxations, args.recovery_at, args.cheap_pass) == (1, [1, 100], 0)


def test_funnel_overrides_are_parsed_sorted_and_checked():
    args = lpo.parse_args(
        [*REQUIRED, '--funnel', 'postprocess.symprec=1', '--funnel', 'screening.duplicate_tolerance=0.2']
    )
    funnel = lpo.funnel_settings(args.funnel)
    assert funnel == (('postprocess.symprec', 1.0), ('screening.duplicate_tolerance', 0.2))
    assert lpo.sections(funnel, 'postprocess') == {'symprec': 1.0}
    assert lpo.sections(funnel, 'screening') == {'duplicate_tolerance': 0.2}
    with pytest.raises(argparse.ArgumentTypeError, match='is not one of'):
        lpo.funnel_override('postprocess.dedupe=1')
    with pytest.raises(argparse.ArgumentTypeError, match='positive'):
        lpo.funnel_override('postprocess.symprec=0')
    with pytest.raises(argparse.ArgumentTypeError, match='not an integer'):
        lpo.funnel_override('cheap_pass.max_steps=2.5')
    with pytest.raises(SystemExit, match='more than once'):
        lpo.funnel_settings([('postprocess.symprec', 1.0), ('postprocess.symprec', 0.5)])


def test_cheap_pass_overrides_set_the_short_relaxation_and_need_the_cheap_pass():
    """``--funnel cheap_pass.*`` replaces the protocol's cheap-pass parameters, and only with a cheap pass."""
    from aiida_crystalgan.workflows.generation import GenerationWorkChain

    protocol = GenerationWorkChain.get_protocol_inputs('balanced')['cheap_pass']['parameters']
    run = [*REQUIRED, '--relaxations', '4', '--cheap-pass', '8']
    sizes = lpo.make_sizes(lpo.parse_args([*run, '--funnel', 'cheap_pass.max_steps=60']))
    assert (sizes.cheap_steps, sizes.cheap_fmax) == (60, protocol['fmax'])
    assert lpo.make_sizes(lpo.parse_args(run)).cheap_steps == protocol['max_steps']
    with pytest.raises(SystemExit, match='needs --cheap-pass'):
        lpo.make_sizes(lpo.parse_args([*REQUIRED, '--funnel', 'cheap_pass.fmax=0.1']))


def test_gan_overrides_are_checked_by_gan_config_and_written_in_the_report():
    args = lpo.parse_args([*REQUIRED, '--gan', 'angular_order=2', 'angular_cutoff=3'])
    settings = lpo.gan_settings(args.gan)
    assert settings == (('angular_cutoff', 3), ('angular_order', 2))
    config = lpo.model_config(SimpleNamespace(gan=settings, protocol='fast', train_steps=5, n_max=8), seed=1)
    assert (config.angular_order, config.angular_cutoff, config.steps, config.seed) == (2, 3.0, 5, 1)
    assert lpo.overrides_lines({'gan': settings}) == [
        "- Changed from the training protocol's GanConfig for this run: `angular_cutoff` = 3, `angular_order` = 2."
    ]
    with pytest.raises(argparse.ArgumentTypeError, match='set by --train-steps'):
        lpo.gan_override('steps=10')
    with pytest.raises(argparse.ArgumentTypeError, match='FIELD=NUMBER'):
        lpo.gan_override('angular_order=two')
    with pytest.raises(SystemExit, match='must be of type int'):
        lpo.gan_settings([('angular_order', 2.5)])
    with pytest.raises(SystemExit, match='unknown config key'):
        lpo.gan_settings([('angular_ordr', 2)])
    with pytest.raises(SystemExit, match='more than once'):
        lpo.gan_settings([('angular_order', 2), ('angular_order', 3)])


def test_validation_split_never_generates_the_test_split():
    assert lpo.validation_split(['Nb4O6'], ['Nb2O3x1']) == ('Nb2O3',)
    assert lpo.validation_split([], ['NbO2x2']) == ()
    with pytest.raises(SystemExit, match='test split'):
        lpo.validation_split(['NbO2'], ['NbO2x2'])
    with pytest.raises(SystemExit, match='give --targets of these compositions only'):
        lpo.validation_split(['Nb2O3'], ['Nb2O3x1', 'NbO2x2'])


def test_public_command_hides_the_data_folder_and_what_is_not_a_setting():
    argv = ['--data-dir', '/home/me/oqmd', '--discussion', 'notes.md', '--output-dir', '/tmp/x', '--report-name', 'a b']
    assert lpo.public_command(argv) == '--data-dir "$OQMD_NB_O" --report-name \'a b\''
    argv = ['--data-dir=/x', '--output-dir=/tmp/y', '--seeds', '0']
    assert lpo.public_command(argv) == '--data-dir="$OQMD_NB_O" --seeds 0'


# ------------------------------------------------------------------------------------------------- recovery walk


def nbo(kind: str) -> Structure:
    """Three distinct NbO structures: rock salt, CsCl type and zinc blende."""
    if kind == 'rocksalt':
        return Structure.from_spacegroup(225, Lattice.cubic(4.24), ['Nb', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    if kind == 'cscl':
        return Structure(Lattice.cubic(2.6), ['Nb', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return Structure.from_spacegroup(216, Lattice.cubic(4.6), ['Nb', 'O'], [[0, 0, 0], [0.25, 0.25, 0.25]])


def zinc_blende_phase() -> dict:
    """A held-out phase as the benchmark keeps it: relaxed structure and energy (-10 eV/atom, as ``relaxed_here``)."""
    structure = nbo('zincblende')
    return {'energy': -10.0 * len(structure), 'final_structure': structure}


class Record:
    def __init__(self, structure: Structure) -> None:
        self.structure = structure

    def to_pymatgen(self) -> Structure:
        return self.structure.copy()


@pytest.fixture
def relaxed_here(monkeypatch) -> list[str]:
    """Replace the CHGNet relaxation by the identity at -10 eV/atom; returns the space groups relaxed, in order."""
    calls: list[str] = []

    def relax_cached(structure, calculator, cache, fmax, max_steps):
        calls.append(structure.get_space_group_info()[0])
        return {
            'cell': structure.lattice.matrix.tolist(),
            'numbers': [site.specie.Z for site in structure],
            'positions': structure.cart_coords.tolist(),
            'energy': -10.0 * len(structure),
            'steps': 1,
            'seconds': 0.0,
        }

    monkeypatch.setattr(lpo.labels, 'relax_cached', relax_cached)
    return calls


def walk_run(order: list[str], selected: int):
    """A funnel result of one composition: records in ``order``, of which the first ``selected`` distinct ones were
    selected (and relaxed) for the metrics."""
    records = [Record(nbo(kind)) for kind in order]
    options = PostprocessOptions(require_charge_balance=False)
    selection = Selection()
    for index, record in enumerate(records):
        if len(selection.structures) < selected and order[index] not in order[:index]:
            selection.structures[index] = record.to_pymatgen()
    composition = {'screened_order': list(range(len(records))), 'selection': selection}
    return {'records': records, 'postprocess_options': options, 'compositions': {'NbO': composition}}


def sizes(recovery_at: tuple[int, ...]):
    return SimpleNamespace(recovery_at=recovery_at, relax_fmax=0.03, relax_steps=10)


def test_the_recovery_walk_relaxes_on_down_the_ranked_list_until_the_phase_is_found(relaxed_here):
    """Rank 1 (rock salt) was relaxed for the metrics; the duplicate is skipped; CsCl (rank 2) and zinc blende (rank
    3, the phase) are relaxed, then the walk stops although more are ranked."""
    run = walk_run(['rocksalt', 'rocksalt', 'cscl', 'zincblende', 'cscl'], selected=1)
    phase = zinc_blende_phase()
    walk = lpo.recovery_walk('gan', run, 'NbO', {7: phase}, {}, [], None, None, sizes((1, 10)))
    assert relaxed_here == ['Pm-3m', 'F-43m']
    assert walk['first'] == {'7': {'rank': 3, 'examined': 4}}
    assert (walk['selected'], walk['examined'], len(walk['relaxations'])) == (3, 4, 2)
    assert [lpo.walk_recovery(walk, 7, n, 4) for n in (2, 3, 10)] == [False, True, True]
    assert not lpo.walk_recovery(walk, 7, 3, 1)  # the funnel of 3 would examine only 3: not among its selection


def test_the_recovery_walk_stops_at_the_largest_n_and_then_reports_a_miss(relaxed_here):
    run = walk_run(['rocksalt', 'cscl', 'zincblende'], selected=1)
    phase = zinc_blende_phase()
    walk = lpo.recovery_walk('gan', run, 'NbO', {7: phase}, {}, [], None, None, sizes((1, 2)))
    assert relaxed_here == ['Pm-3m']
    assert walk['first'] == {} and not lpo.walk_recovery(walk, 7, 2, 4)


def test_the_recovery_walk_needs_no_relaxation_when_the_metrics_found_the_phase(relaxed_here):
    """Found at rank 1 by the relaxations of the metrics: recovery@N holds for every larger N, nothing more is run."""
    run = walk_run(['zincblende', 'cscl'], selected=1)
    phase = zinc_blende_phase()
    walk = lpo.recovery_walk('gan', run, 'NbO', {7: phase}, {7: 1}, [], None, None, sizes((1, 100)))
    assert relaxed_here == [] and walk['relaxations'] == []
    assert lpo.walk_recovery(walk, 7, 100, 4)


def test_a_relaxed_candidate_rediscovers_a_phase_only_at_its_energy():
    matcher = make_matcher()
    phase = zinc_blende_phase()
    assert lpo.rediscovered_phases(nbo('zincblende'), -80.0, {7: phase}, matcher) == [7]
    assert lpo.rediscovered_phases(nbo('zincblende'), -79.8, {7: phase}, matcher) == []  # 0.025 eV/atom higher
    assert lpo.rediscovered_phases(nbo('cscl'), -20.0, {7: phase}, matcher) == []


def test_the_dedupe_replay_parses_its_own_arguments_before_those_of_the_run():
    args, rest = cheap_pass_dedupe.parse_args(['--symprec', '1', '--symprec', '0.3', '--', *REQUIRED, '--quick'])
    assert args.symprec == [1.0, 0.3] and rest == [*REQUIRED, '--quick']
    with pytest.raises(SystemExit, match='after `--`'):
        cheap_pass_dedupe.parse_args(['--symprec', '1'])
    with pytest.raises(SystemExit):
        cheap_pass_dedupe.parse_args(['--symprec', '0', '--', *REQUIRED])
    with pytest.raises(SystemExit, match='must include --cheap-pass'):
        cheap_pass_dedupe.main(['--', *REQUIRED])


def test_near_hull_reach_counts_distinct_structures_per_arm_and_together():
    """GAN: rock salt three times (one distinct) and CsCl; random: CsCl and zinc blende. Shared: CsCl; union: 3."""
    near_hull = {
        'gan': [nbo('rocksalt'), nbo('rocksalt').copy().scale_lattice(nbo('rocksalt').volume * 1.01), nbo('cscl')],
        'random': [nbo('cscl'), nbo('zincblende')],
    }
    near_hull['gan'].insert(1, nbo('rocksalt').make_supercell([2, 1, 1]))  # the same crystal in a larger cell
    counts = near_hull_reach.reach(near_hull, make_matcher())
    assert counts == {
        'gan_near_hull': 4,
        'random_near_hull': 2,
        'gan_distinct': 2,
        'random_distinct': 2,
        'union': 3,
        'shared': 1,
    }


def test_near_hull_reach_names_its_report_after_the_run_and_checks_its_arguments():
    args = lpo.parse_args([*REQUIRED, '--report-name', 'leave_phases_out_2500'])
    assert near_hull_reach.output_name(args) == 'near_hull_reach_2500'
    assert near_hull_reach.output_name(lpo.parse_args(REQUIRED)) == 'near_hull_reach'
    with pytest.raises(SystemExit, match='after `--`'):
        near_hull_reach.parse_args(['--window', '0.1'])
    with pytest.raises(SystemExit):
        near_hull_reach.parse_args(['--window', '0', '--', *REQUIRED])


def test_a_replay_script_shows_its_own_help(capsys):
    with pytest.raises(SystemExit) as stopped:
        near_hull_reach.parse_args(['--help'])
    assert stopped.value.code == 0 and '--window' in capsys.readouterr().out


@pytest.mark.parametrize(('quick', 'stem'), [(False, 'near_hull_reach'), (True, 'near_hull_reach_quick')])
def test_a_report_of_a_smoke_run_never_takes_the_published_name(tmp_path, quick, stem):
    """A replay of a ``--quick`` run writes ``<name>_quick``, as the run itself does, not over the published report."""
    args = argparse.Namespace(discussion=None, output_dir=tmp_path)
    lpo.save_report({'rows': []}, args, 'near_hull_reach', lambda report, path: path.write_text('table'), quick)
    assert sorted(path.name for path in tmp_path.iterdir()) == [f'{stem}.json', f'{stem}.md']
