"""Unit tests of the grades service: rules, record assembly and use cases."""
