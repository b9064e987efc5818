"""Unit tests of the sync service: delivery rules and use cases with in-memory storage."""
