"""Code that two or more hocba services share: contracts, messaging, storage, crypto, settings."""
