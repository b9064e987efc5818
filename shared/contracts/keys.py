"""Key rotation messages: an operator asks a service to rotate the data key it keeps personal data under.

Every service that keeps personal data at rest keeps it under its own key ring; each has its own
command (`<service>.keys.rotate.v1`) and progress event (`<service>.keys.rotation.v1`), so the broker's
permissions let each service hear only its own.
"""

from __future__ import annotations

from pydantic import Field

from shared.contracts.base import Message, Notification
from shared.contracts.limits import ID


class RotateDataKey(Message):
    """Command (operator): add a new data key, make it current, re-encrypt everything kept under an older one."""


class DataKeyRotationProgress(Notification):
    """How far a rotation is: `done` of `total` documents re-encrypted under `key_id`; the last one `finished`."""

    source_message_id: str = Field(max_length=ID)
    key_id: str = Field(max_length=ID)
    done: int
    total: int
    finished: bool = False


class RotateGradesKey(RotateDataKey):
    ROUTING_KEY = "grades.keys.rotate.v1"


class GradesKeyRotationProgress(DataKeyRotationProgress):
    ROUTING_KEY = "grades.keys.rotation.v1"


class RotateSigningKey(RotateDataKey):
    ROUTING_KEY = "signing.keys.rotate.v1"


class SigningKeyRotationProgress(DataKeyRotationProgress):
    ROUTING_KEY = "signing.keys.rotation.v1"


class RotateArchiveKey(RotateDataKey):
    ROUTING_KEY = "archive.keys.rotate.v1"


class ArchiveKeyRotationProgress(DataKeyRotationProgress):
    ROUTING_KEY = "archive.keys.rotation.v1"


class RotateSyncKey(RotateDataKey):
    ROUTING_KEY = "sync.keys.rotate.v1"


class SyncKeyRotationProgress(DataKeyRotationProgress):
    ROUTING_KEY = "sync.keys.rotation.v1"
