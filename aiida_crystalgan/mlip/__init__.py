"""The ``crystalgan-mlip`` executable: engine operations with a universal MLIP from files alone (no AiiDA import)."""
