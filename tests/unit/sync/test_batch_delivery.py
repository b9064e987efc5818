"""Delivery in batches: K due records go in ceil(K/N) requests of the batch endpoint, each item answered alone."""

from __future__ import annotations

from dataclasses import replace

from services.sync import handlers
from services.sync.domain import DELIVERED, PENDING
from services.sync.ministry import Ministry
from tests.records import record_documents
from tests.unit.sync.conftest import MINISTRY_URL, archived, delivered_ids, entry

BATCH = 10


def batched(deps, client):
    return replace(deps, ministry=Ministry(MINISTRY_URL, concurrency=4, client=client, batch_size=BATCH))


async def test_k_records_are_delivered_in_k_over_n_requests_rounded_up(deps, client, store):
    outcome = await handlers.accept_archived(archived(25), batched(deps, client))
    assert len(delivered_ids(outcome)) == 25
    assert store.batches == 3, "25 records, 10 a request"
    assert len(store.receipts) == 25


async def test_an_item_the_ministry_refuses_is_retried_alone_and_the_rest_are_delivered(deps, client, store, repo, clock):
    store.faults.fail_items_next = 1
    first = await handlers.accept_archived(archived(5), batched(deps, client))
    assert len(delivered_ids(first)) == 4 and store.batches == 1
    refused = [k for k in (f"hb-79000701-{i:04d}:1" for i in range(5)) if (await entry(repo, k)).status == PENDING]
    assert len(refused) == 1

    clock.advance(60)
    second = await handlers.deliver_due(batched(deps, client))
    assert delivered_ids(second) == [refused[0].split(":")[0]]
    assert store.batches == 2 and len(store.receipts) == 5
    assert (await entry(repo, refused[0])).status == DELIVERED


async def test_taking_in_and_delivering_records_makes_no_document_canonical(deps, client, store, canonicalised):
    """sync checks the archive's digest over the content it was given and sends from it: it never writes a record
    document again (the ministry's copy of the digest is the one grades' bytes gave)."""
    event = archived(12)
    canonicalised.clear()
    outcome = await handlers.accept_archived(event, batched(deps, client))
    assert len(delivered_ids(outcome)) == 12
    assert record_documents(canonicalised) == []
    assert {r["digest"] for r in store.receipts.values()} >= {r.digest for r in event.records}
