"""Write the CIF files of this folder from the published crystallographic data listed in README.md.

Each phase is space group, lattice parameters and Wyckoff positions as reported in the literature; pymatgen expands
them into the conventional cell. Run it from anywhere: `python examples/references/nb-o/build_cifs.py`.
"""

from pathlib import Path

from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

FOLDER = Path(__file__).parent

#: name: (space group, lattice, species, fractional coordinates of the Wyckoff positions)
PHASES = {
    # Roberge, J. Less-Common Met. 40, 161 (1975): a = 3.3004 Å at room temperature; Nb on 2a.
    'Nb-bcc': ('Im-3m', Lattice.cubic(3.3004), ['Nb'], [[0.0, 0.0, 0.0]]),
    # Bowman, Wallace, Yarnell, Wenzel, Acta Cryst. 21, 843 (1966): a = 4.211 Å; Nb on 3c, O on 3d.
    'NbO-Pm-3m': ('Pm-3m', Lattice.cubic(4.211), ['Nb', 'O'], [[0.0, 0.5, 0.5], [0.5, 0.0, 0.0]]),
    # Bolzan, Fong, Kennedy, Howard, J. Solid State Chem. 113, 9 (1994), high-temperature (metallic) phase:
    # a = 4.846 Å, c = 3.032 Å; Nb on 2a, O on 4f (x, x, 0) with x = 0.292.
    'NbO2-rutile': ('P4_2/mnm', Lattice.tetragonal(4.846, 3.032), ['Nb', 'O'], [[0.0, 0.0, 0.0], [0.292, 0.292, 0.0]]),
}


def build(name: str) -> Structure:
    """The conventional cell of phase ``name``."""
    spacegroup, lattice, species, coords = PHASES[name]
    return Structure.from_spacegroup(spacegroup, lattice, species, coords)


if __name__ == '__main__':
    for name in PHASES:
        CifWriter(build(name), symprec=1e-3).write_file(FOLDER / f'{name}.cif')
