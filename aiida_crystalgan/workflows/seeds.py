"""``crystalgan.seeds``: the starting structures of a chemical system (prototypes and the user's own)."""

from __future__ import annotations

from aiida import orm
from aiida.engine import WorkChain

from aiida_crystalgan.structures.prototypes import parse_system
from aiida_crystalgan.workflows.functions import prototype_seeds


def validate_system(value: orm.Str, _) -> str | None:
    """Reject a malformed chemical system string or an unknown element before anything is stored."""
    try:
        parse_system(value.value)
    except ValueError as exception:
        return str(exception)
    return None


def foreign_elements(structure: orm.StructureData, elements: list[str]) -> list[str]:
    """Elements of ``structure`` that are not part of the chemical system."""
    return sorted(structure.get_symbols_set() - set(elements))


class SeedsWorkChain(WorkChain):
    """Collect seed structures: built-in prototypes of ``system`` plus any structures given by the user."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('system', valid_type=orm.Str, validator=validate_system, help='Chemical system, e.g. `Nb-O`.')
        spec.input('max_atoms', valid_type=orm.Int, default=lambda: orm.Int(16), help='Largest seed cell.')
        spec.input('use_prototypes', valid_type=orm.Bool, default=lambda: orm.Bool(True),
                   help='Include the built-in prototypes of the system.')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, required=False,
                             help='The user\'s own seeds (from files, groups or OPTIMADE imports).')
        spec.outline(cls.check_user_structures, cls.build_prototypes, cls.results)
        spec.output_namespace('structures', valid_type=orm.StructureData, dynamic=True, help='All seeds.')
        spec.exit_code(300, 'ERROR_NO_SEEDS', message='No seed structure: no prototype fits and none was given.')
        spec.exit_code(301, 'ERROR_FOREIGN_ELEMENTS',
                       message='Seed `{key}` contains {elements}, which are not in the system {system}.')

    def check_user_structures(self):
        """Every user structure must be made of the system's elements only."""
        elements = parse_system(self.inputs.system.value)
        for key, structure in self.inputs.get('structures', {}).items():
            foreign = foreign_elements(structure, elements)
            if foreign:
                return self.exit_codes.ERROR_FOREIGN_ELEMENTS.format(key=key, elements=foreign,
                                                                     system=self.inputs.system.value)
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
