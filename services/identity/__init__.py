"""identity: students keyed by the 12-digit personal ID; validation, storage and look-ups."""
