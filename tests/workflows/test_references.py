"""Reference phases of the campaign: the shipped Nb–O files, validation at submission, and the hull they build."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from aiida import orm
from aiida.engine import run_get_node
from click.testing import CliRunner
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from aiida_crystalgan.analysis.hull import build_phase_diagram, hull_phases, named_entry
from aiida_crystalgan.cli import cmd_root
from aiida_crystalgan.cli.campaign import reference_phases
from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.workflows.campaign import CampaignWorkChain, split_relaxed, validate_inputs

REFERENCES = Path(__file__).parents[2] / 'examples' / 'references' / 'nb-o'
EXPECTED = {'Nb-bcc.cif': ('Nb', 'Im-3m'), 'NbO-Pm-3m.cif': ('NbO', 'Pm-3m'), 'NbO2-rutile.cif': ('NbO2', 'P4_2/mnm')}


def cubic(species: list[str], coords: list[list[float]], a: float = 4.2) -> Structure:
    return Structure(Lattice.cubic(a), species, coords)


def count_process_nodes() -> int:
    return orm.QueryBuilder().append(orm.ProcessNode).count()


@pytest.fixture
def campaign_builder(mlip_code, train_code, generate_code):
    """A campaign builder without prototypes, so that its pure phases are only the ones given."""

    def factory(**kwargs):
        return CampaignWorkChain.get_builder_from_protocol(
            'Nb-O', mlip_code, train_code, generate_code, overrides={'seeds': {'use_prototypes': False}}, **kwargs
        )

    return factory


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_shipped_reference_phases_have_their_published_space_group(name):
    parsed = Structure.from_file(REFERENCES / name)
    formula, spacegroup = EXPECTED[name]
    assert parsed.composition.reduced_formula == formula
    assert SpacegroupAnalyzer(parsed, symprec=1e-3).get_space_group_symbol() == spacegroup
    assert name in (REFERENCES / 'README.md').read_text()


@pytest.mark.parametrize(
    ('references', 'message'),
    [
        ({'nb': cubic(['Nb', 'Nb'], [[0, 0, 0], [0.5, 0.5, 0.5]], 3.3)}, 'no pure phase of O'),
        ({'tio': cubic(['Ti', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])}, '`references.tio` contains Ti, outside'),
    ],
)
def test_bad_references_are_refused_without_storing_a_node(campaign_builder, references, message):
    builder = campaign_builder(references={key: orm.StructureData(pymatgen=s) for key, s in references.items()})
    before = count_process_nodes()
    with pytest.raises(ValueError, match=message):
        run_get_node(builder)
    assert count_process_nodes() == before


@pytest.mark.parametrize(
    ('targets', 'message'),
    [
        ([{'composition': 'TiO2', 'formula_units': 1}], 'element\\(s\\) Ti of `TiO2` not in'),
        ([{'composition': 'NbO2', 'formula_units': 0}], 'formula_units of `NbO2` must be a positive integer'),
        ([{'composition': 'Nb2O5', 'formula_units': 100}], 'Nb2O5 x 100 has 700 atoms, more than n_max'),
        ([{'composition': 'Nb)O(', 'formula_units': 1}], 'cannot parse composition'),
        (['NbO2'], 'a target is {composition, formula_units}'),
        ([{'formula_units': 1}], 'a target is {composition, formula_units}'),
    ],
)
def test_bad_targets_are_refused_without_storing_a_node(campaign_builder, targets, message):
    builder = campaign_builder()
    builder.targets = orm.List(targets)
    before = count_process_nodes()
    with pytest.raises(ValueError, match=message):
        run_get_node(builder)
    assert count_process_nodes() == before


def test_targets_are_checked_against_the_configured_cell_size(campaign_builder):
    pure = {
        'nb': cubic(['Nb', 'Nb'], [[0, 0, 0], [0.5, 0.5, 0.5]], 3.3),
        'o': cubic(['O', 'O'], [[0, 0, 0], [0.24, 0, 0]]),
    }
    builder = campaign_builder(references={key: orm.StructureData(pymatgen=s) for key, s in pure.items()})
    builder.targets = orm.List([{'composition': 'NbO2', 'formula_units': 2}])
    assert validate_inputs(builder._inputs(prune=True), None) is None
    builder.training.train.parameters = orm.Dict({**builder.training.train.parameters.get_dict(), 'n_max': 4})
    assert 'NbO2 x 2 has 6 atoms, more than n_max=4' in validate_inputs(builder._inputs(prune=True), None)


def test_datasets_are_accepted_as_references_and_seeds(campaign_builder):
    """A dataset (as an importer writes it) counts with its pure phases, as seeds or as references."""
    nb = cubic(['Nb', 'Nb'], [[0, 0, 0], [0.5, 0.5, 0.5]], 3.3)
    oxygen = cubic(['O', 'O'], [[0, 0, 0], [0.24, 0, 0]], 5.0)
    dataset = CrystalDatasetData.from_structures([nb, oxygen])
    for inputs in ({'references': {'imported': dataset}}, {'structures': {'imported': dataset}}):
        assert validate_inputs(campaign_builder(**inputs)._inputs(prune=True), None) is None
    only_nb = CrystalDatasetData.from_structures([nb])
    assert 'no pure phase of O' in validate_inputs(
        campaign_builder(references={'nb': only_nb})._inputs(prune=True), None
    )


def test_a_reference_that_did_not_relax_is_left_out_of_the_hull():
    summary = {
        'Nb_bcc': {'converged': True, 'forces_below_tolerance': True},
        'reference_NbO': {'converged': False, 'forces_below_tolerance': True},
        'reference_NbO2': {'converged': False, 'forces_below_tolerance': False},
    }
    assert split_relaxed(summary) == (['Nb_bcc', 'reference_NbO'], ['reference_NbO2'])


def test_hull_phases_name_the_phases_on_the_hull():
    entries = [
        named_entry('nb', 'Nb', -10.0),
        named_entry('o2', 'O2', -10.0),
        named_entry('nbo', 'NbO', -16.0),
        named_entry('nbo-above', 'NbO', -9.0),
    ]
    phases = hull_phases(build_phase_diagram(entries))
    assert [phase['name'] for phase in phases] == ['nb', 'nbo', 'o2']
    assert phases[1]['formation_energy_per_atom'] == pytest.approx(-0.5)


def test_cli_reads_reference_files_folders_and_datasets(aiida_localhost):
    references = reference_phases((str(REFERENCES),))
    assert {node.get_pymatgen().composition.reduced_formula for node in references.values()} == {'Nb', 'NbO', 'NbO2'}
    dataset = CrystalDatasetData.from_structures([cubic(['Nb'], [[0, 0, 0]], 3.3)]).store()
    assert {key: node.uuid for key, node in reference_phases((str(dataset.pk),)).items()} == {
        f'node_{dataset.pk}': dataset.uuid
    }
    not_a_structure = orm.Int(1).store()
    with pytest.raises(click.BadParameter, match='not a structure or a dataset'):
        reference_phases((str(not_a_structure.pk),))


def test_cli_refuses_references_outside_the_system(aiida_localhost, tmp_path):
    CliRunner().invoke(cmd_root, ['setup', '--computer', aiida_localhost.label])
    cubic(['Ti', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(tmp_path / 'tio.cif'))
    before = count_process_nodes()
    result = CliRunner().invoke(
        cmd_root, ['campaign', 'submit', '--system', 'Nb-O', '--references', str(tmp_path / 'tio.cif'), '--no-daemon']
    )
    assert result.exit_code != 0
    assert 'contains Ti, outside the system Nb-O' in result.output
    assert count_process_nodes() == before
    result = CliRunner().invoke(
        cmd_root, ['campaign', 'submit', '--system', 'Nb-O', '--references', 'nothing-here', '--no-daemon']
    )
    assert result.exit_code != 0 and 'neither a structure file' in result.output
