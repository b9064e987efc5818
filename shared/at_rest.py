"""Documents kept encrypted at rest, and the rotation of the data key they are under.

A service that keeps a record (grades, signing, archive) or a ministry payload (sync) keeps it as
`SealedDocuments` say: the document's JSON sealed whole under the service's vault (AES-256-GCM,
`shared.crypto.fields.DocumentCipher`), `nonce ‖ ciphertext` in the document's field and the key's
id in `key_id` beside it, the associated data naming the kind of document and its owner (record id
and version), so nothing in the database says who the student is, and a ciphertext moved to another
record does not open.

An operator rotates a service's data key (`KeyRotation`): a new key is added and made current, then
everything under an older key is re-encrypted step by step, each step announced; reads go on
throughout, since each document names the key it is under and the old keys stay in the ring.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from shared.auth import Actor, IssuerKeys, require_actor
from shared.contracts.base import Acting, Message, derived_id
from shared.contracts.keys import DataKeyRotationProgress, RotateDataKey
from shared.crypto.vault import Vault
from shared.errors import Forbidden
from shared.messaging import Bus
from shared.outcome import Outcome

log = logging.getLogger("hocba.keys")

#: The stored field beside a sealed document naming the key it is under.
KEY_ID = "key_id"


# --- documents sealed whole --------------------------------------------------------------------


def document_bytes(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SealedDocuments:
    """One collection's document field, sealed under `vault`: `kind` names what it is, `owner` whose it is.

    `owner` reads the owner's name (record id and version) from the stored document's fields in clear,
    which `owner_fields` lists so a re-encryption step reads no more than it needs. `encode` writes a
    document as the bytes kept (the archive keeps the RFC 8785 bytes that were signed); re-encryption
    keeps those bytes exactly.
    """

    collection: AsyncCollection
    vault: Vault
    kind: str
    owner: Callable[[Mapping[str, Any]], str]
    owner_fields: tuple[str, ...]
    field: str = "document"
    encode: Callable[[Mapping[str, Any]], bytes] = document_bytes

    def sealed(self, owner: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """The stored fields of `document`: its ciphertext and the key id."""
        return self.sealed_bytes(owner, self.encode(document))

    def sealed_bytes(self, owner: str, plain: bytes) -> dict[str, Any]:
        """The stored fields of a document already encoded (`plain`)."""
        self.vault.refresh()
        key_id, sealed = self.vault.documents.seal(self.kind, owner, plain)
        return {self.field: sealed, KEY_ID: key_id}

    def opened_bytes(self, stored: Mapping[str, Any]) -> bytes:
        """The bytes a stored document holds (a document stored in clear by an older release: as `encode` writes it)."""
        if KEY_ID not in stored:
            return self.encode(self._in_clear(stored))
        key_id = stored[KEY_ID]
        self.vault.knows(key_id)  # reloads the ring when another process rotated it
        return self.vault.documents.open(self.kind, self.owner(stored), key_id, bytes(stored[self.field]))

    def opened(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The document a stored one holds."""
        if KEY_ID not in stored:
            return self._in_clear(stored)
        return json.loads(self.opened_bytes(stored))

    def _in_clear(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        value = stored[self.field]
        return json.loads(value) if isinstance(value, str) else dict(value)

    def _not_under(self, key_id: str) -> dict[str, Any]:
        return {KEY_ID: {"$nin": [key_id]}}

    async def count_not_under(self, key_id: str) -> int:
        return await self.collection.count_documents(self._not_under(key_id))

    async def reencrypt(self, limit: int) -> int:
        """Re-encrypt up to `limit` documents not under the current key; returns how many were."""
        current = self.vault.current
        projection = {self.field: 1, KEY_ID: 1, **dict.fromkeys(self.owner_fields, 1)}
        batch = [doc async for doc in self.collection.find(self._not_under(current), projection).limit(limit)]
        if not batch:
            return 0
        updates = [
            UpdateOne(
                {"_id": doc["_id"], KEY_ID: doc.get(KEY_ID)},
                {"$set": self.sealed_bytes(self.owner(doc), self.opened_bytes(doc))},
            )
            for doc in batch
        ]
        result = await self.collection.bulk_write(updates, ordered=False)
        return result.modified_count


# --- rotating the data key -----------------------------------------------------------------------


class Reencrypting(Protocol):
    """What a service keeps under its data key, as rotation sees it."""

    async def count_not_under(self, key_id: str) -> int:
        """Documents not (all) under `key_id`."""

    async def reencrypt(self, limit: int) -> int:
        """Re-encrypt up to `limit` documents not under the current key; returns how many were."""


class NothingSealed:
    """A store with nothing at rest (an in-memory repository in tests): nothing to re-encrypt."""

    async def count_not_under(self, key_id: str) -> int:
        return 0

    async def reencrypt(self, limit: int) -> int:
        return 0


def authorise_key_rotation(actor: Actor) -> None:
    """Refuse a key rotation by anyone but an operator."""
    if not actor.has("operator"):
        raise Forbidden(f"{actor.subject} may not rotate keys: operators do")


class RotationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.keys = Gauge("hocba_data_keys", "Data keys in this service's key ring.", registry=registry)
        self.reencrypted = Counter(
            "hocba_documents_reencrypted_total", "Documents re-encrypted under a new data key.", registry=registry
        )
        self.rotations = Counter("hocba_data_key_rotations_total", "Data key rotations completed.", registry=registry)


@dataclass(frozen=True)
class KeyRotation:
    """A service's data-key rotation: who may ask, what it re-encrypts, how it tells its progress."""

    vault: Vault
    store: Reencrypting
    progress: type[DataKeyRotationProgress]
    issuer_keys: IssuerKeys | None
    metrics: RotationMetrics
    announce: Callable[[Message], Awaitable[None]]
    per_step: int = 200

    @classmethod
    def on(
        cls,
        bus: Bus,
        vault: Vault,
        store: Reencrypting,
        progress: type[DataKeyRotationProgress],
        issuer_keys: IssuerKeys | None,
    ) -> KeyRotation:
        """A service's rotation as its app wires it: metrics in the bus's registry, progress published at once."""
        return cls(vault, store, progress, issuer_keys, RotationMetrics(bus.registry), bus.publish)

    async def show_key_ring(self) -> None:
        """Show how many data keys the ring holds, from the start."""
        self.metrics.keys.set(self.vault.key_count)

    async def rotate(self, command: RotateDataKey) -> Outcome:
        """Add a key, make it current, re-encrypt everything under an older one, `per_step` documents a step.

        Each step's progress is announced as it happens; the last, finished, is published and replied.
        Redelivered, the same key id is derived and the work resumes where it was.
        """
        actor = require_actor(command, self.issuer_keys)
        authorise_key_rotation(actor)
        by = actor.acting()
        key_id = "k-" + derived_id(command.message_id, "key")[:12]
        self.vault.add_key(key_id)
        await self.show_key_ring()
        total = await self.store.count_not_under(key_id)
        done = 0
        await self.announce(self._progress(command, by, key_id, done, total))
        while changed := await self.store.reencrypt(self.per_step):
            done += changed
            self.metrics.reencrypted.inc(changed)
            await self.announce(self._progress(command, by, key_id, done, total))
        self.metrics.rotations.inc()
        log.info("%s: key rotation to %s finished: %d document(s) re-encrypted", self.vault.owner, key_id, done)
        finished = self._progress(command, by, key_id, done, total, finished=True)
        return Outcome(publish=[finished], reply=finished)

    def _progress(
        self, command: RotateDataKey, by: Acting, key_id: str, done: int, total: int, finished: bool = False
    ) -> DataKeyRotationProgress:
        return self.progress(
            message_id=derived_id(command.message_id, "rotation", done, finished),
            by=by,
            source_message_id=command.message_id,
            key_id=key_id,
            done=done,
            total=total,
            finished=finished,
        )


def owner_of(key: tuple[str, int]) -> str:
    """A record version as the owner of its sealed document: `<record id>:<version>`."""
    return f"{key[0]}:{key[1]}"


def record_owner(stored: Mapping[str, Any]) -> str:
    """Whose a stored record version is, from its fields in clear."""
    return owner_of((stored["record_id"], stored["version"]))


def sealed_records(
    collection: AsyncCollection, vault: Vault, encode: Callable[[Mapping[str, Any]], bytes] = document_bytes
) -> SealedDocuments:
    """A collection of record versions (`record_id`, `version` in clear) whose `document` is sealed."""
    return SealedDocuments(collection, vault, "record", record_owner, ("record_id", "version"), encode=encode)
