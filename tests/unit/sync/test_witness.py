"""Checkpoints to the ministry as a witness: each goes with the archive's signature over its fields as written and the
consistency proof from the latest checkpoint the ministry holds; a refusal parks it with the ministry's reason, is
counted under that reason (the alert's), and a proof out of date is asked again."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

from services.sync import handlers
from services.sync.domain import (
    CHECKPOINT,
    DELIVERED,
    PARKED,
    PENDING,
    OutboxEntry,
    checkpoint_payload,
    consistency_links,
    new_checkpoint_entry,
    new_entry,
)
from shared.contracts.archive import signed_time
from shared.crypto.archive_log import check_checkpoint_fields
from shared.errors import NoAnswer, Refused
from tests.unit.sync.conftest import archived, checkpoint_issued, entry, statuses
from tests.unit.sync.sealed import ORIGIN, LogProofs, foreign_pki, log_of, signed_checkpoint, trust

NOW = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)


def key(size: int) -> str:
    return f"checkpoint:{ORIGIN}:{size}"


def refused(registry, reason: str) -> float:
    return registry.get_sample_value("hocba_sync_checkpoints_refused_total", {"reason": reason}) or 0.0


# -- the time as signed -----------------------------------------------------------------------


def test_the_payloads_time_is_the_signed_string_and_its_fields_verify_as_written():
    """A verifier that reads the payload's fields as they stand rebuilds the bytes the archive signed."""
    moment = datetime.now(UTC).replace(microsecond=123456)
    checkpoint = signed_checkpoint(7, issued_at=moment).checkpoint
    payload = checkpoint_payload(checkpoint)
    assert payload["issued_at"] == f"{moment:%Y-%m-%dT%H:%M:%S}.123Z" == signed_time(checkpoint.issued_at)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["issued_at"])
    assert check_checkpoint_fields(payload, trust()).ok
    as_microseconds = {**payload, "issued_at": moment.isoformat()}
    assert not check_checkpoint_fields(as_microseconds, trust()).ok


# -- which proofs go with which checkpoints ------------------------------------------------------


def pending(size: int, origin: str = ORIGIN) -> OutboxEntry:
    return new_checkpoint_entry(signed_checkpoint(size, origin).checkpoint, NOW)


def test_the_first_checkpoint_needs_no_proof_and_each_later_one_links_with_the_one_before():
    assert consistency_links([pending(9), pending(4), pending(12)], {ORIGIN: None}) == {key(9): (4, 9), key(12): (9, 12)}


def test_checkpoints_link_with_the_latest_the_ministry_holds_older_ones_from_themselves_up_to_it():
    links = consistency_links([pending(3), pending(5), pending(9), pending(12)], {ORIGIN: 5})
    assert links == {key(3): (3, 5), key(9): (5, 9), key(12): (9, 12)}, "5 is held already: it needs none"


def test_each_origin_links_with_its_own_checkpoints():
    other = "another/archive"
    links = consistency_links([pending(4), pending(6, other), pending(9)], {ORIGIN: 2, other: None})
    assert links == {key(4): (2, 4), key(9): (4, 9)}


# -- delivering them ----------------------------------------------------------------------------


async def test_a_later_checkpoint_goes_with_the_archives_proof_from_the_one_the_ministry_holds(deps, repo, store, archive_log):
    for size in (4, 9, 20):
        await handlers.accept_checkpoint(checkpoint_issued(tree_size=size), deps)
    assert archive_log.asked == [(4, 9), (9, 20)]
    assert set((await statuses(repo)).values()) == {DELIVERED}
    assert sorted(int(c["tree_size"]) for c in store.checkpoints.values()) == [4, 9, 20]


async def test_attack_a_checkpoint_of_a_rewritten_log_is_refused_parked_and_counted(deps, repo, store, registry):
    """The operator rewrote the log from entry 2 on and signed a checkpoint of it with the archive's key: the signature
    holds, so sync sends it; the ministry, holding the checkpoint of 4 entries, refuses it."""
    forked = log_of(16, fork_at=2)
    await handlers.accept_checkpoint(checkpoint_issued(tree_size=4), deps)
    rewritten = replace(deps, archive=LogProofs(forked))
    await handlers.accept_checkpoint(signed_checkpoint(9, log=forked), rewritten)

    parked = await entry(repo, key(9))
    assert (parked.status, parked.attempts) == (PARKED, 1)
    assert "HTTP 422: the consistency proof from tree size 4 to 9 does not hold" in parked.last_error
    assert refused(registry, "inconsistent") == 1 and refused(registry, "other") == 0
    assert registry.get_sample_value("hocba_sync_parked_entries") == 1
    assert list(store.checkpoints) == [key(4)]


async def test_a_checkpoint_the_ministry_cannot_check_against_its_anchor_is_parked_as_bad_signature(
    deps, repo, store, registry
):
    store.trust = lambda: foreign_pki().trust_store()
    await handlers.accept_checkpoint(checkpoint_issued(tree_size=4), deps)
    parked = await entry(repo, key(4))
    assert parked.status == PARKED and "the checkpoint's signature is not the archive's" in parked.last_error
    assert refused(registry, "bad-signature") == 1


async def test_a_proof_the_archive_refuses_parks_the_checkpoint_unsent(deps, repo, store, registry):
    class Truncated:
        async def consistency(self, first: int, second: int) -> list[str]:
            raise Refused(f"no consistency proof from {first} to {second} (the log has 6)", reason="invalid")

    await handlers.accept_checkpoint(checkpoint_issued(tree_size=4), deps)
    await handlers.accept_checkpoint(checkpoint_issued(tree_size=9), replace(deps, archive=Truncated()))
    parked = await entry(repo, key(9))
    assert parked.status == PARKED
    assert parked.last_error == (
        "the archive gives no consistency proof from tree size 4 to 9: no consistency proof from 4 to 9 (the log has 6)"
    )
    assert refused(registry, "no-proof") == 1 and list(store.checkpoints) == [key(4)]


async def test_an_archive_that_does_not_answer_leaves_the_checkpoint_waiting(deps, repo, store, clock, policy):
    class Away:
        async def consistency(self, first: int, second: int) -> list[str]:
            raise NoAnswer("no answer to archive.proof.consistency.v1 within 30s")

    await handlers.accept_checkpoint(checkpoint_issued(tree_size=4), deps)
    await handlers.accept_checkpoint(checkpoint_issued(tree_size=9), replace(deps, archive=Away()))
    waiting = await entry(repo, key(9))
    assert (waiting.status, waiting.attempts) == (PENDING, 1) and "no answer" in waiting.last_error
    clock.advance(policy.cap_seconds)
    await handlers.deliver_due(deps)
    assert (await entry(repo, key(9))).status == DELIVERED


async def test_an_archive_that_does_not_answer_is_asked_once_a_round_and_the_records_go_on(deps, repo, store, clock):
    class Away:
        asked = 0

        async def consistency(self, first: int, second: int) -> list[str]:
            Away.asked += 1
            raise NoAnswer("no answer to archive.proof.consistency.v1 within 10s")

    await handlers.accept_checkpoint(checkpoint_issued(tree_size=4), deps)
    [record] = archived(1).records
    waiting = [new_checkpoint_entry(signed_checkpoint(size).checkpoint, clock()) for size in (6, 9)]
    await repo.add_new([*waiting, new_entry(record, clock())])
    await handlers.deliver_due(replace(deps, archive=Away()))
    assert Away.asked == 1
    assert await statuses(repo) == {key(4): DELIVERED, key(6): PENDING, key(9): PENDING, "hb-79000701-0000:1": DELIVERED}


async def test_a_proof_from_a_checkpoint_the_ministry_no_longer_holds_last_is_asked_again(
    deps, repo, store, clock, policy, archive_log
):
    """The ministry took checkpoint 4, but its answer was lost: sync, not knowing, sends 9 without a proof. The ministry
    says which it holds (412); once 4's receipt is recorded, 9 goes again with the proof from 4."""
    store.faults.lose_next, store.faults.hang_seconds = 1, 0.0
    await handlers.accept_checkpoint(checkpoint_issued(tree_size=4), deps)
    assert (await entry(repo, key(4))).status == PENDING and key(4) in store.checkpoints
    await handlers.accept_checkpoint(checkpoint_issued(tree_size=9), deps)
    told = await entry(repo, key(9))
    assert (told.status, told.attempts) == (PENDING, 1) and told.last_error.startswith("HTTP 412")
    assert "must link tree size 9 with 4, the latest checkpoint held" in told.last_error
    for _ in range(3):
        clock.advance(policy.cap_seconds)
        await handlers.deliver_due(deps)
    assert await statuses(repo) == {key(4): DELIVERED, key(9): DELIVERED}
    assert (4, 9) in archive_log.asked


async def test_records_go_out_as_before_beside_checkpoints(deps, repo, store):
    await handlers.accept_checkpoint(checkpoint_issued(tree_size=4), deps)
    await handlers.accept_archived(archived(2), deps)
    await handlers.accept_checkpoint(checkpoint_issued(tree_size=6), deps)
    assert set((await statuses(repo)).values()) == {DELIVERED} and store.accepted == 2
    assert sorted(k for k in await statuses(repo) if k.startswith(CHECKPOINT)) == [key(4), key(6)]
