"""aiida-crystalgan: crystal structure prediction with GANs, with full AiiDA provenance.

The top-level package imports nothing heavy: ``aiida_crystalgan.gan`` and ``aiida_crystalgan.io`` are used by the
CalcJob executables on compute nodes where no AiiDA profile exists.
"""

__version__ = '0.1.0'
