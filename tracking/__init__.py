"""Everything MLflow: where records go (``store``), the trainer callback (``callback``), a sweep's parent
run (``sweep_run``), the offline outbox (``outbox``, ``sync``), run files (``artifacts``), provenance tags."""
