"""Pure-Python analysis of crystal structures (pymatgen, spglib, PyXtal; no AiiDA import).

Modules, one concept each:

* :mod:`.validity`: structural validity (distances, volume per atom) and charge balance;
* :mod:`.matching`: duplicates and reference matches with ``StructureMatcher``, grouped by formula;
* :mod:`.postprocess`: wrap, merge close atoms, symmetrise, filter and deduplicate candidates, with a report;
* :mod:`.screening`: rank the fast filters' survivors on the engine's hull and post-process them best first;
* :mod:`.hull`: convex hull and energy above the hull from one engine's energies;
* :mod:`.phonons`: dynamical stability from finite displacements with phonopy and any ASE calculator;
* :mod:`.fingerprints`: CrystalNN structure fingerprint and composition features (coverage metrics);
* :mod:`.metrics`: validity, uniqueness, novelty, match rate / RMSE, coverage, stability, S.U.N., phonons;
* :mod:`.baseline`: random symmetric structures with PyXtal, the baseline of the generative model.
"""
