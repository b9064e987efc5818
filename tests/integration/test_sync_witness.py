"""The ministry as a witness of the archive's log, end to end on real RabbitMQ and the MongoDB-wire server: the archive
service signs a checkpoint of its log on its schedule, sync asks it over the bus for the consistency proof from the
checkpoint the ministry holds and sends both, and the simulator (served over HTTP, holding the test PKI's anchor)
takes a log that grew and refuses one that was rewritten, which sync parks and counts under the ministry's reason."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from hocba.ministry_simulator import ReceiptStore
from services.archive.app import build_app as build_archive
from services.archive.handlers import Keys
from services.archive.repository import InMemoryArchiveRepository
from services.sync.app import build_app as build_sync
from services.sync.domain import DELIVERED, PARKED
from shared.auth import IssuerKey
from shared.crypto.merkle import MerkleTree
from shared.crypto.pki import ARCHIVE_SUBJECT
from tests.integration.test_sync_integration import FAST, eventually, simulator
from tests.support import free_port, running
from tests.unit.sync.sealed import LOG, ORIGIN, dev_pki, log_of, signed_checkpoint, trust


class ArchivedLog(InMemoryArchiveRepository):
    """The archive's storage, holding the leaves of `log` (as the log entries stored would give them)."""

    def __init__(self, log: MerkleTree) -> None:
        super().__init__()
        self.leaves = [log.leaf(seq) for seq in range(log.size)]

    async def leaf_hashes(self) -> list[bytes]:
        return list(self.leaves)


async def witnessed(mongo_client, settings, log: MerkleTree, expected: str) -> tuple[ReceiptStore, dict, CollectorRegistry]:
    """The ministry first takes the archive's genuine checkpoint of 4 entries; then the archive, holding `log`, starts
    and signs a checkpoint of it. Returns the ministry, sync's outbox by key once the new checkpoint is `expected`,
    and sync's metrics."""
    store = ReceiptStore(trust=trust)
    async with simulator(store, free_port()) as url:
        sync = build_sync(settings.model_copy(update={"ministry_url": url}), mongo=mongo_client, policy=FAST, trust=trust)
        outbox = mongo_client[settings.names().database("sync")]["outbox"]
        async with running(sync):
            await sync.bus.publish(signed_checkpoint(4))

            async def first_held() -> bool:
                return await outbox.count_documents({"status": DELIVERED}) == 1

            await eventually(first_held, what="the first checkpoint delivered")
            archive = build_archive(
                settings.model_copy(update={"archive_origin": ORIGIN}),
                repository=ArchivedLog(log),
                keys=Keys(signer=lambda: dev_pki().signer(ARCHIVE_SUBJECT), trust=None),
                issuer_keys=IssuerKey.generate("test-school-app").public_keys(),
            )
            async with running(archive):

                async def answered() -> bool:
                    entry = await outbox.find_one({"_id": f"checkpoint:{ORIGIN}:{log.size}"})
                    return entry is not None and entry["status"] == expected

                await eventually(answered, what=f"the archive's checkpoint of {log.size} entries {expected}")
        entries = {doc["_id"]: doc async for doc in outbox.find({})}
    return store, entries, sync.registry


async def test_a_log_that_grew_is_witnessed_with_the_proof_sync_asks_the_archive_for(mongo_client, settings):
    store, entries, _ = await witnessed(mongo_client, settings, log_of(9), DELIVERED)
    assert sorted(store.checkpoints) == [f"checkpoint:{ORIGIN}:4", f"checkpoint:{ORIGIN}:9"]
    assert store.checkpoints[f"checkpoint:{ORIGIN}:9"]["root_hash"] == LOG.root(9).hex()
    assert {doc["status"] for doc in entries.values()} == {DELIVERED}


async def test_a_rewritten_log_is_refused_by_the_ministry_and_sync_surfaces_why(mongo_client, settings):
    """The operator rewrote the log from entry 2 on; the archive signs a checkpoint of it with its own key."""
    store, entries, registry = await witnessed(mongo_client, settings, log_of(9, fork_at=2), PARKED)
    assert list(store.checkpoints) == [f"checkpoint:{ORIGIN}:4"]
    refused = entries[f"checkpoint:{ORIGIN}:9"]
    assert refused["attempts"] == 1
    assert refused["last_error"].startswith("HTTP 422: the consistency proof from tree size 4 to 9 does not hold")
    assert registry.get_sample_value("hocba_sync_checkpoints_refused_total", {"reason": "inconsistent"}) == 1
    assert registry.get_sample_value("hocba_sync_parked_entries") == 1
