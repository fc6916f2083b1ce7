"""The ``mlip`` engine: a universal machine-learned interatomic potential (CHGNet by default) run as a CalcJob."""
