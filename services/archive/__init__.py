"""archive: every signed record version kept forever in an append-only, hash-chained log."""
