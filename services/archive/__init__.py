"""archive: every signed record version kept forever in an append-only RFC 9162 Merkle log with signed checkpoints."""
