"""engines/mlip."""
