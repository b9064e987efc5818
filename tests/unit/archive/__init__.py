"""Unit tests of the archive service."""
