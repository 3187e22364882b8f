"""Everything MLflow: where records go (``store``), run folders mirrored into runs (``mirror``), a sweep's parent
run (``sweep_run``), the accuracy-matrix files (``artifacts``), metric histories in bulk (``history``)."""
