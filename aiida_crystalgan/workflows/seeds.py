"""``crystalgan.seeds``: the starting structures of a chemical system (prototypes and the user's own)."""

from __future__ import annotations

import re
from typing import Any

from aiida import orm
from aiida.engine import WorkChain, calcfunction

from aiida_crystalgan.structures.prototypes import parse_system
from aiida_crystalgan.workflows.protocols import ProtocolMixin


def validate_system(value: orm.Str, _) -> str | None:
    """Reject a malformed chemical system string or an unknown element before anything is stored."""
    try:
        parse_system(value.value)
    except ValueError as exception:
        return str(exception)
    return None


def link_label(text: str) -> str:
    """A valid link label (letters, digits, single underscores) made from ``text``."""
    label = re.sub(r'_+', '_', re.sub(r'\W', '_', text)).strip('_')
    return label if label and not label[0].isdigit() else f's_{label}'


@calcfunction
def prototype_seeds(system: orm.Str, max_atoms: orm.Int) -> dict[str, orm.StructureData]:
    """Seed structures of ``system`` from the built-in prototypes; each records where its data come from."""
    from aiida_crystalgan.structures.prototypes import seed_structures

    outputs = {}
    for seed in seed_structures(system.value, max_atoms=max_atoms.value):
        structure = orm.StructureData(pymatgen=seed.structure)
        structure.base.extras.set_many({'seed_label': seed.label, 'seed_source': seed.source})
        structure.label = seed.label
        outputs[link_label(seed.label)] = structure
    return outputs


def foreign_elements(structure: orm.StructureData, elements: list[str]) -> list[str]:
    """Elements of ``structure`` that are not part of the chemical system."""
    return sorted(structure.get_symbols_set() - set(elements))


class SeedsWorkChain(ProtocolMixin, WorkChain):
    """Collect seed structures: built-in prototypes of ``system`` plus any structures given by the user."""

    _protocol_file = 'seeds.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('system', valid_type=orm.Str, validator=validate_system, help='Chemical system, e.g. `Nb-O`.')
        spec.input('max_atoms', valid_type=orm.Int, help='Largest seed cell.')
        spec.input('use_prototypes', valid_type=orm.Bool, help='Include the built-in prototypes of the system.')
        spec.input_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help="The user's own seeds (from files, groups or OPTIMADE imports).",
        )
        spec.outline(cls.check_user_structures, cls.build_prototypes, cls.results)
        spec.output_namespace('structures', valid_type=orm.StructureData, dynamic=True, help='All seeds.')
        spec.exit_code(600, 'ERROR_NO_SEEDS', message='No seed structure: no prototype fits and none was given.')
        spec.exit_code(
            601,
            'ERROR_FOREIGN_ELEMENTS',
            message='Seed `{key}` contains {elements}, which are not in the system {system}.',
        )

    @classmethod
    def get_builder_from_protocol(
        cls,
        system: str,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
        structures: dict[str, orm.StructureData] | None = None,
    ):
        """A builder for ``system`` with the ``max_atoms`` and ``use_prototypes`` of ``protocol`` (``seeds.yaml``)."""
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.system = orm.Str(system)
        builder.max_atoms = orm.Int(inputs['max_atoms'])
        builder.use_prototypes = orm.Bool(inputs['use_prototypes'])
        if structures:
            builder.structures = structures
        return builder

    def check_user_structures(self):
        """Every user structure must be made of the system's elements only."""
        elements = parse_system(self.inputs.system.value)
        for key, structure in self.inputs.get('structures', {}).items():
            foreign = foreign_elements(structure, elements)
            if foreign:
                return self.exit_codes.ERROR_FOREIGN_ELEMENTS.format(
                    key=key, elements=foreign, system=self.inputs.system.value
                )
        return None

    def build_prototypes(self) -> None:
        """Build the prototypes through a calcfunction, so that their origin is in provenance."""
        self.ctx.seeds = {}
        if self.inputs.use_prototypes.value:
            self.ctx.seeds.update(prototype_seeds(self.inputs.system, self.inputs.max_atoms))

    def results(self):
        """Return prototypes and user structures together."""
        seeds = {**self.ctx.seeds, **{f'user_{key}': s for key, s in self.inputs.get('structures', {}).items()}}
        if not seeds:
            return self.exit_codes.ERROR_NO_SEEDS
        self.out('structures', seeds)
        self.report(f'{len(seeds)} seed structures for {self.inputs.system.value}')
        return None
