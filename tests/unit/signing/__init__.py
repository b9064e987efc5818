"""Unit tests of the signing service."""
