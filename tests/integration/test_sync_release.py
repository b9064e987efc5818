"""The outbox hands back an interrupted round's entries and makes waiting entries due: the in-memory and the MongoDB
outbox alike."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.sync.domain import DELIVERED, PENDING, SENDING, Failure, new_entry, receipt_from
from services.sync.repository import INDEXES, InMemoryOutboxRepository, MongoOutboxRepository
from shared.crypto.vault import Vault
from tests.integration.conftest import service_database
from tests.integration.test_sync_repository import LEASE, NOW, record

LATER = NOW + timedelta(seconds=5)


@pytest.fixture
async def repo(backend, mongo_client, settings):
    if backend == "in-memory":
        return InMemoryOutboxRepository()
    return MongoOutboxRepository(await service_database(mongo_client, settings, "sync", INDEXES), Vault.ephemeral())


async def states(repo, keys) -> dict[str, tuple[str, int, str | None]]:
    return {k: (e.status, e.attempts, e.claim) for k, e in (await repo.entries(keys)).items()}


async def test_an_interrupted_claim_is_released_due_at_once_and_taken_again(repo):
    entries = [new_entry(record(i), NOW) for i in range(3)]
    keys = [e.key for e in entries]
    await repo.add_new(entries)
    taken = await repo.claim(keys[:2], NOW, NOW + LEASE, "c-1", 10)
    await repo.claim(keys[2:], NOW, NOW + LEASE, "c-2", 10)
    assert len(taken) == 2

    assert await repo.release("c-1", NOW + LEASE, LATER) == keys[:2]
    assert await states(repo, keys) == {
        keys[0]: (PENDING, 0, None),
        keys[1]: (PENDING, 0, None),
        keys[2]: (SENDING, 0, "c-2"),  # another sender's claim stays its own
    }
    assert await repo.release("c-1", NOW + LEASE, LATER) == []
    again = await repo.claim(None, LATER, LATER + LEASE, "c-3", 10)
    assert sorted(e.key for e in again) == keys[:2], "released entries are due at once, not at their lease's end"


async def test_a_renewed_lease_keeps_a_claims_entries_until_its_new_end(repo):
    entries = [new_entry(record(i), NOW) for i in range(3)]
    keys = [e.key for e in entries]
    await repo.add_new(entries)
    await repo.claim(keys[:2], NOW, NOW + LEASE, "c-1", 10)
    await repo.claim(keys[2:], NOW, NOW + LEASE, "c-2", 10)
    renewed = NOW + 2 * LEASE

    assert await repo.renew("c-1", NOW + LEASE, renewed) == 2
    past_first = NOW + LEASE + timedelta(seconds=1)
    assert [e.key for e in await repo.claim(None, past_first, past_first + LEASE, "c-3", 10)] == keys[2:], (
        "only the lease not renewed ran out"
    )
    assert await repo.claim(keys[:2], past_first, past_first + LEASE, "c-3", 10) == []
    assert await repo.renew("c-1", NOW + LEASE, NOW + 3 * LEASE) == 0, "renewed from the end it holds, not another"
    assert await repo.release("c-1", renewed, LATER) == keys[:2]


async def test_a_release_leaves_what_the_round_recorded(repo):
    entries = [new_entry(record(i), NOW) for i in range(2)]
    await repo.add_new(entries)
    taken = await repo.claim([e.key for e in entries], NOW, NOW + LEASE, "c-1", 10)
    receipt = receipt_from(taken[0], {"receipt_id": "r-0"}, NOW)
    await repo.record_answers("c-1", [receipt], [])

    assert await repo.release("c-1", NOW + LEASE, LATER) == [entries[1].key]
    assert (await states(repo, [entries[0].key]))[entries[0].key][0] == DELIVERED


@pytest.mark.parametrize("attempts", [1, 6])
async def test_waiting_entries_are_made_due_now_with_their_attempts_kept(repo, attempts):
    entries = [new_entry(record(i), NOW) for i in range(3)]
    keys = [e.key for e in entries]
    await repo.add_new(entries)
    await repo.claim(keys, NOW, NOW + LEASE, "c-1", 10)
    backing_off = [Failure(k, "c-1", PENDING, attempts, "HTTP 503", NOW + timedelta(hours=1)) for k in keys[:2]]
    await repo.record_answers("c-1", [], backing_off)
    assert await repo.claim(None, LATER, LATER + LEASE, "c-2", 10) == []

    assert await repo.due_now(LATER) == 2
    due = await repo.claim(None, LATER, LATER + LEASE, "c-3", 10)
    assert sorted((e.key, e.attempts) for e in due) == [(keys[0], attempts), (keys[1], attempts)]
    assert (await states(repo, [keys[2]]))[keys[2]] == (SENDING, 0, "c-1"), "an entry being sent is left to its sender"
