"""Cryptography shared by the services: canonical JSON, signatures, certificates, the Merkle log, field encryption."""
