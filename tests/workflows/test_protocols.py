"""Protocols: every builder against a stored expectation, and overrides refused when a key is unknown."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from aiida import orm
from click.testing import CliRunner

from aiida_crystalgan.cli import cmd_root
from aiida_crystalgan.engines.vasp.protocols import load_protocols
from aiida_crystalgan.workflows.campaign import STAGE_WORKCHAINS, CampaignWorkChain
from aiida_crystalgan.workflows.phonons import PhononWorkChain
from aiida_crystalgan.workflows.protocols import DEFAULT_PROTOCOL

EXPECTATIONS = Path(__file__).parent / 'expectations'
PROTOCOLS = ('fast', 'balanced', 'precise')
OVERRIDES = {
    'targets': [{'composition': 'NbO2', 'formula_units': 2}],
    'sampling': {'temperatures': [500]},
    'quench': {'max_snapshots': 3},
    'stability': {'check_phonons': False, 'phonons': {'supercell_matrix': [2, 2, 2]}},
    'training': {'config': {'latent_dim': 16}, 'max_wallclock_seconds': 3600},
    'generation': {'postprocess': {'validity': {'min_distance': 0.8}}},
}


def plain(value):
    """Builder content as plain data: nodes by their value, codes by their label."""
    if isinstance(value, orm.AbstractCode):
        return f'code:{value.label}'
    if isinstance(value, orm.Dict):
        return value.get_dict()
    if isinstance(value, orm.List):
        return value.get_list()
    if isinstance(value, orm.BaseType):
        return value.value
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    return value


@pytest.fixture
def codes(aiida_localhost):
    """Unstored engine, training and generation codes."""
    return [
        orm.InstalledCode(label=label, computer=aiida_localhost, filepath_executable=f'/bin/{label}')
        for label in ('engine', 'train', 'generate')
    ]


def expectation(name: str) -> dict:
    return yaml.safe_load((EXPECTATIONS / f'{name}.yaml').read_text(encoding='utf8'))


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_campaign_builder_matches_expectation(codes, protocol):
    """Every stage of the campaign built from its own protocol file: the stored ``campaign-<protocol>.yaml``."""
    builder = CampaignWorkChain.get_builder_from_protocol('Nb-O', *codes, protocol=protocol)
    assert plain(builder._inputs(prune=True)) == expectation(f'campaign-{protocol}')


def test_campaign_builder_with_overrides_and_engine_protocol(codes):
    """Overrides reach their stage; the engine protocol and settings are the caller's, not the campaign's."""
    builder = CampaignWorkChain.get_builder_from_protocol(
        'Nb-O',
        *codes,
        protocol='fast',
        overrides=OVERRIDES,
        engine='vasp',
        engine_protocol='precise',
        engine_settings={'potential_family': 'PBE.54'},
        train_options={'queue_name': 'gpu'},
    )
    assert plain(builder._inputs(prune=True)) == expectation('campaign-overrides')


def test_default_protocol_is_one_for_the_plugin(codes):
    """No protocol named: the plugin's default everywhere, the engine's protocol included."""
    builder = CampaignWorkChain.get_builder_from_protocol('Nb-O', *codes)
    assert builder.engine.protocol.value == DEFAULT_PROTOCOL
    assert plain(builder._inputs(prune=True)) == expectation(f'campaign-{DEFAULT_PROTOCOL}')
    assert DEFAULT_PROTOCOL in load_protocols()['protocols']
    for workchain in (CampaignWorkChain, PhononWorkChain, *STAGE_WORKCHAINS.values()):
        assert set(workchain.get_available_protocols()) == set(PROTOCOLS)
        assert workchain.get_default_protocol() == DEFAULT_PROTOCOL


@pytest.mark.parametrize(
    ('overrides', 'key'),
    [
        ({'samplng': {'steps': 10}}, 'samplng'),
        ({'sampling': {'temperature': 300}}, 'sampling.temperature'),
        ({'stability': {'relax': {'fmax': 0.1, 'steps': 10}}}, 'stability.relax.steps'),
        ({'stability': {'phonons': {'qmesh': [2, 2, 2]}}}, 'stability.phonons.qmesh'),
        ({'training': {'config': {'stepz': 10}}}, 'training.config.stepz'),
        ({'generation': {'stability': {'force_tolerance': 0.1}}}, 'generation.stability'),
        ({'quench': {'stability': {'force_tolerance': 0.1}}}, 'quench.stability'),
        ({'quench': {'max_snapshot': 2}}, 'quench.max_snapshot'),
    ],
)
def test_unknown_override_keys_are_refused(codes, overrides, key):
    with pytest.raises(ValueError, match=f'unknown override key `{key}`'):
        CampaignWorkChain.get_builder_from_protocol('Nb-O', *codes, overrides=overrides)


@pytest.mark.parametrize(
    'arguments',
    [{'protocol': 'sloppy'}, {'engine': 'vasp', 'engine_protocol': 'sloppy'}, {'engine_protocol': 'sloppy'}],
)
def test_unknown_protocol_is_refused(codes, arguments):
    with pytest.raises(ValueError, match='unknown protocol `sloppy`'):
        CampaignWorkChain.get_builder_from_protocol('Nb-O', *codes, **arguments)


def test_cli_refuses_unknown_override_keys(aiida_localhost, tmp_path):
    """``campaign submit --overrides`` with a typo: a clear message naming the key, and no process stored."""
    CliRunner().invoke(cmd_root, ['setup', '--computer', aiida_localhost.label])
    overrides = tmp_path / 'overrides.yaml'
    overrides.write_text('sampling:\n  temperature: 300\n')
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    result = CliRunner().invoke(
        cmd_root, ['campaign', 'submit', '--system', 'Nb-O', '--overrides', str(overrides), '--no-daemon']
    )
    assert result.exit_code != 0
    assert 'unknown override key `sampling.temperature`' in result.output
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_stage_builders_take_the_stage_overrides(aiida_localhost):
    """A stage alone: its own protocol and overrides, checked against its own keys."""
    structure = orm.StructureData(cell=[[3.3, 0, 0], [0, 3.3, 0], [0, 0, 3.3]])
    structure.append_atom(position=(0, 0, 0), symbols='Nb')
    engine = {'code': orm.InstalledCode(label='engine', computer=aiida_localhost, filepath_executable='/bin/true')}
    builder = PhononWorkChain.get_builder_from_protocol(structure, engine, 'precise', {'dos': True})
    assert builder.parameters.get_dict() == {
        **expectation('campaign-precise')['stability']['parameters']['phonons'],
        'dos': True,
    }
    with pytest.raises(ValueError, match='unknown override key `phonons`'):
        PhononWorkChain.get_builder_from_protocol(structure, engine, overrides={'phonons': {}})
