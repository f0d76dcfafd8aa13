"""The facade database's tables, one module per area (keys, templates, webhooks, batches, the job ledger,
watermarks), and :mod:`sojourn.store.db` for engines and sessions. Prefect owns execution state; these
hold what Prefect has no place for."""
