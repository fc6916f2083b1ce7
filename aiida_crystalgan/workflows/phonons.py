"""Dynamical stability with phonopy and any engine: aiida-phonopy's ``PhonopyWorkChain`` fed by ``engine.forces``.

Phonopy makes the displaced supercells; the engine computes their forces in one batch (with the pristine supercell,
whose residual forces are subtracted); force constants and a q-mesh tell whether a frequency lies below
``-frequency_tolerance`` THz (an imaginary mode: the structure is not a local minimum).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, calcfunction, if_
from aiida_phonopy.calculations.functions.data_utils import generate_preprocess_data
from aiida_phonopy.data import ForceConstantsData, PhonopyData
from aiida_phonopy.workflows.phonopy import PhonopyWorkChain
from ase.cell import Cell

from aiida_crystalgan.analysis.phonons import lowest_frequency, supercell_matrix_for_length
from aiida_crystalgan.engines.base import check_number, expose_engine_inputs, submit_engine
from aiida_crystalgan.workflows.protocols import ProtocolMixin

PARENT_PORTS_REPLACED = ('supercell_matrix', 'symmetry_tolerance', 'displacement_generator')


#: Bounds of the phonon parameters, ``name: (type, lower (exclusive), upper (inclusive))``: beyond them a typo would
#: ask for supercells of thousands of atoms or q-meshes of millions of points.
PARAMETER_BOUNDS = {
    'supercell_min_length': (float, 0, 30.0),  # Å
    'displacement': (float, 0, 0.5),  # Å
    'frequency_tolerance': (float, 0, 10.0),  # THz
    'symmetry_tolerance': (float, 0, 1.0),  # Å
}
#: Largest q-mesh divisions along one axis, and most unit cells in a supercell.
MAX_MESH = 64
MAX_SUPERCELL_CELLS = 1000
BOOLEAN_PARAMETERS = ('subtract_residual_forces', 'band_structure', 'dos')


def _integers(value, shape: tuple[int, ...]) -> np.ndarray | None:
    """``value`` as an integer array of ``shape``, or ``None`` when it is not one."""
    if np.shape(value) != shape:
        return None
    array = np.asarray(value, dtype=object).reshape(-1)
    if not all(isinstance(item, int) and not isinstance(item, bool) for item in array):
        return None
    return np.asarray(value, dtype=int)


def validate_parameters(parameters: orm.Dict, _) -> str | None:
    """Check the keys, types and bounds of the ``parameters``: every key of ``phonons.yaml``, ``supercell_matrix``."""
    values = parameters.get_dict()
    allowed = PhononWorkChain.get_override_keys()
    unknown = set(values) - set(allowed)
    if unknown:
        return f'unknown phonon parameters {sorted(unknown)}: use {sorted(allowed)}'
    if 'supercell_matrix' in values:
        matrix = values['supercell_matrix']
        matrix = _integers(matrix, (3,)) if np.shape(matrix) == (3,) else _integers(matrix, (3, 3))
        if matrix is None:
            return '`supercell_matrix` must be 3 integers (diagonal) or a 3x3 integer matrix'
        cells = abs(round(np.linalg.det(np.diag(matrix) if matrix.ndim == 1 else matrix)))
        if not 1 <= cells <= MAX_SUPERCELL_CELLS:
            return f'`supercell_matrix` must make a supercell of 1 to {MAX_SUPERCELL_CELLS} unit cells, not {cells}'
    for key, bounds in PARAMETER_BOUNDS.items():
        if key in values:
            message = check_number(key, values[key], *bounds)
            if message:
                return message
    if 'mesh' in values:
        mesh = _integers(values['mesh'], (3,))
        if mesh is None or not ((mesh >= 1) & (mesh <= MAX_MESH)).all():
            return f'`mesh` must be 3 integers from 1 to {MAX_MESH}, got {values["mesh"]!r}'
    for key in BOOLEAN_PARAMETERS:
        if key in values and not isinstance(values[key], bool):
            return f'`{key}` must be true or false, got {values[key]!r}'
    missing = set(allowed) - set(values) - {'supercell_matrix'}
    if missing:
        return f'missing phonon parameters {sorted(missing)}: build the inputs with `get_builder_from_protocol`'
    return None


@calcfunction
def get_force_constants(phonopy_data: PhonopyData, subtract_residual_forces: orm.Bool) -> ForceConstantsData:
    """Force constants from the displacements and forces (the residual forces subtracted when asked)."""
    subtract = subtract_residual_forces.value and phonopy_data.residual_forces is not None
    phonopy = phonopy_data.get_phonopy_instance(subtract_residual_forces=subtract)
    phonopy.produce_force_constants()
    force_constants = ForceConstantsData(
        structure=phonopy_data.get_unitcell(),
        supercell_matrix=phonopy_data.supercell_matrix,
        primitive_matrix=phonopy_data.primitive_matrix,
        symprec=phonopy_data.symprec,
        is_symmetry=phonopy_data.is_symmetry,
    )
    force_constants.set_force_constants(phonopy.force_constants)
    return force_constants


@calcfunction
def analyse_force_constants(force_constants: ForceConstantsData, parameters: orm.Dict) -> dict[str, orm.Data]:
    """Lowest frequency (THz) on the q-mesh and dynamical stability; band structure and DOS when asked.

    Imaginary frequencies are negative, as phonopy writes them.
    """
    parameters = parameters.get_dict()
    phonopy = force_constants.get_phonopy_instance()
    min_frequency = lowest_frequency(phonopy, parameters['mesh'])
    outputs = {
        'min_frequency': orm.Float(min_frequency),
        'is_stable': orm.Bool(min_frequency >= -parameters['frequency_tolerance']),
    }
    if parameters['dos']:
        phonopy.run_total_dos()
        dos = phonopy.get_total_dos_dict()
        outputs['dos'] = orm.XyData()
        outputs['dos'].set_x(dos['frequency_points'], 'frequency', 'THz')
        outputs['dos'].set_y(dos['total_dos'], 'dos', 'states/THz')
    if parameters['band_structure']:
        outputs['band_structure'] = _band_structure(phonopy)
    return outputs


def _band_structure(phonopy) -> orm.BandsData:
    """Frequencies along the high-symmetry path of the primitive cell (ASE's special points)."""
    cell = np.array(phonopy.primitive.cell)
    path = Cell(cell).bandpath(npoints=60)
    phonopy.run_qpoints(path.kpts)
    labelled = {tuple(np.round(point, 8)): name for name, point in path.special_points.items()}
    labels = [(index, labelled[key]) for index, key in enumerate(map(tuple, np.round(path.kpts, 8))) if key in labelled]
    bands = orm.BandsData()
    bands.set_cell(cell)
    bands.set_kpoints(path.kpts)
    bands.labels = labels
    bands.set_bands(phonopy.get_qpoints_dict()['frequencies'], units='THz')
    return bands


class PhononWorkChain(ProtocolMixin, PhonopyWorkChain):
    """Finite-displacement phonons of one structure with any engine, and its dynamical stability.

    aiida-phonopy's ``supercell_matrix``, ``symmetry_tolerance`` and ``displacement_generator`` inputs are replaced by
    the engine-independent ``parameters``: ``supercell_matrix`` (3 or 3x3 integers) or ``supercell_min_length`` (Å),
    ``displacement`` (Å), ``mesh``, ``frequency_tolerance`` (THz), ``symmetry_tolerance``,
    ``subtract_residual_forces``, ``band_structure``, ``dos`` (values in ``protocols/phonons.yaml``).
    """

    _protocol_file = 'phonons.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        for name in PARENT_PORTS_REPLACED:
            del spec.inputs[name]
        expose_engine_inputs(spec)
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            validator=validate_parameters,
            help='Supercell, displacement, q-mesh and stability tolerance; see `protocols/phonons.yaml`.',
        )
        spec.outline(
            cls.setup,
            cls.run_supercells,
            cls.run_forces,
            cls.inspect_forces,
            cls.run_results,
            if_(cls.should_run_phonopy)(
                cls.run_phonopy,
                cls.inspect_phonopy,
            ),
            cls.run_analysis,
        )
        spec.output('min_frequency', valid_type=orm.Float, help='Lowest frequency on the q-mesh (THz, < 0: imaginary).')
        spec.output('is_stable', valid_type=orm.Bool, help='No frequency below -frequency_tolerance on the q-mesh.')
        spec.output('band_structure', valid_type=orm.BandsData, required=False, help='Frequencies (THz) on a path.')
        spec.output('dos', valid_type=orm.XyData, required=False, help='Total phonon DOS.')
        spec.exit_code(
            632,
            'ERROR_SUPERCELL_TOO_LARGE',
            message='The supercell would hold {cells} unit cells, more than '
            + str(MAX_SUPERCELL_CELLS)
            + ': lower `supercell_min_length` or give `supercell_matrix`.',
        )
        spec.exit_code(
            630,
            'ERROR_ENGINE_FAILED',
            message='The engine failed on the displaced supercells: {message}. Check the engine inputs.',
        )
        spec.exit_code(631, 'ERROR_MISSING_FORCES', message='The engine returned no forces for the supercells {keys}.')

    @classmethod
    def get_override_keys(cls) -> dict[str, Any]:
        """The protocol's keys and ``supercell_matrix``, which replaces ``supercell_min_length``."""
        return {**super().get_override_keys(), 'supercell_matrix': None}

    @classmethod
    def get_builder_from_protocol(
        cls,
        structure: orm.StructureData,
        engine: dict[str, Any],
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        """A builder for the phonons of ``structure`` with the ``parameters`` of ``protocol`` (``phonons.yaml``).

        :param engine: the ``engine`` inputs (``code``, and optionally ``name``, ``protocol``, ``settings``...).
        """
        return cls.get_builder_with_parameters(protocol, overrides, structure=structure, engine=engine)

    def _parameters(self) -> dict[str, Any]:
        return self.inputs.parameters.get_dict()

    def setup(self) -> ExitCode | None:
        """Displace the supercells of ``structure`` (or take the given ``preprocess_data``)."""
        if 'preprocess_data' in self.inputs:
            self.ctx.preprocess_data = self.inputs.preprocess_data
            return
        parameters = self._parameters()
        structure = self.inputs.structure
        matrix = parameters.get('supercell_matrix')
        if matrix is None:
            matrix = supercell_matrix_for_length(np.array(structure.cell), parameters['supercell_min_length'])
        elif np.shape(matrix) == (3,):
            matrix = np.diag(matrix).tolist()
        cells = abs(round(np.linalg.det(matrix)))
        if cells > MAX_SUPERCELL_CELLS:
            return self.exit_codes.ERROR_SUPERCELL_TOO_LARGE.format(cells=cells)
        inputs = {
            'structure': structure,
            'supercell_matrix': orm.List(matrix),
            'symprec': orm.Float(parameters['symmetry_tolerance']),
            'displacement_generator': orm.Dict({'distance': parameters['displacement']}),
        }
        for name in ('primitive_matrix', 'is_symmetry'):
            if name in self.inputs:
                inputs[name] = self.inputs[name]
        self.ctx.preprocess_data = generate_preprocess_data(**inputs)
        self.report(f'supercell matrix {matrix}')
        return None

    def run_forces(self) -> None:
        """One ``forces`` call of the engine on all displaced supercells (and the pristine one)."""
        structures = dict(self.ctx.supercells)
        if self._parameters()['subtract_residual_forces']:
            structures['supercell_0'] = self.ctx.preprocess_data.calcfunctions.get_supercell()
        node = submit_engine(self, 'forces', structures, {})
        self.report(f'submitted {node.process_label}<{node.pk}> for {len(structures)} supercells')
        self.to_context(engine=node)

    def inspect_forces(self) -> ExitCode | None:
        """Expose the engine's forces as ``supercells_forces.forces_<n>`` (``forces_0``: the pristine supercell)."""
        engine = self.ctx.engine
        if not engine.is_finished_ok:
            return self.exit_codes.ERROR_ENGINE_FAILED.format(message=engine.exit_message or engine.process_state)
        results = engine.outputs.results
        keys = [key for key, _ in self.ctx.supercells]
        if self._parameters()['subtract_residual_forces']:
            keys.append('supercell_0')
        missing = [key for key in keys if key not in results]
        if missing:
            return self.exit_codes.ERROR_MISSING_FORCES.format(keys=', '.join(missing))
        for key in keys:
            self.out(f'supercells_forces.forces_{int(key.split("_")[-1])}', results[key])
        return None

    def run_analysis(self) -> None:
        """Force constants, lowest frequency on the q-mesh and the verdict."""
        subtract = orm.Bool(self._parameters()['subtract_residual_forces'])
        force_constants = get_force_constants(self.ctx.phonopy_data, subtract)
        self.out('force_constants', force_constants)
        outputs = analyse_force_constants(force_constants, self.inputs.parameters)
        self.out_many(outputs)
        verdict = 'stable' if outputs['is_stable'].value else 'dynamically unstable'
        self.report(f'lowest frequency {outputs["min_frequency"].value:.3f} THz: {verdict}')
