"""Development keys made at run time into the ignored data folder (never committed)."""

from __future__ import annotations

import json
from pathlib import Path

from joserfc.jwk import ECKey

from hocba.infra import private_data_folder, private_opener
from shared.auth import DEFAULT_ISSUER, IssuerKey

PRIVATE = "actor-issuer.private.jwk.json"
PUBLIC = "actor-issuer.jwks.json"


def existing_dev_issuer(data_dir: Path) -> IssuerKey | None:
    """The local stand-in for the school management system's token key, when the data folder has one."""
    private_path = data_dir / "keys" / PRIVATE
    if not private_path.exists():
        return None
    return IssuerKey(ECKey.import_key(json.loads(private_path.read_text())), DEFAULT_ISSUER)


def dev_issuer(data_dir: Path) -> tuple[IssuerKey, Path]:
    """The local stand-in for the school management system's token key, created on first use.

    Returns the private key (for the command line, which acts as that system locally) and the
    path of the public JWKS the services are pointed at. Both files are 0600 in a 0700 folder, like
    everything under the data folder.
    """
    folder = private_data_folder(data_dir / "keys")
    private_path, public_path = folder / PRIVATE, folder / PUBLIC
    key = existing_dev_issuer(data_dir)
    if key is None:
        key = IssuerKey.generate("hocba-dev-school-app")
        with open(private_path, "w", opener=private_opener) as out:
            json.dump(key.private_jwk(), out)
    with open(public_path, "w", opener=private_opener) as out:
        json.dump({"keys": [key.key.as_dict(private=False)]}, out, indent=2)
    return key, public_path
