"""Submit a Nb–O campaign from Python with the `fast` protocol, known Nb–O phases for the hull and a few overrides.

Run after `aiida-crystalgan setup` and `verdi daemon start`:

    python examples/run_campaign.py
"""

from pathlib import Path

from aiida import load_profile, orm
from aiida.engine import submit
from pymatgen.core import Structure

from aiida_crystalgan.workflows.campaign import CampaignWorkChain

load_profile()

references = {
    path.stem.replace('-', '_'): orm.StructureData(pymatgen=Structure.from_file(path))
    for path in sorted((Path(__file__).parent / 'references' / 'nb-o').glob('*.cif'))
}

builder = CampaignWorkChain.get_builder_from_protocol(
    'Nb-O',
    engine_code=orm.load_code('crystalgan_mlip@localhost'),
    train_code=orm.load_code('crystalgan_train@localhost'),
    generate_code=orm.load_code('crystalgan_generate@localhost'),
    protocol='fast',
    overrides={'sampling': {'temperatures': [300, 900, 1500]}, 'generation': {'max_validations': 10}},
    references=references,
)
node = submit(builder)
print(f'submitted campaign <{node.pk}>; follow it with `aiida-crystalgan campaign wait {node.pk}`')
