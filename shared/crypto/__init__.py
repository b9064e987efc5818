"""Cryptography shared by the services: canonical JSON, digests, signatures, hash chains."""
