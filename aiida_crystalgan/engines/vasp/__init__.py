"""engines/vasp."""
