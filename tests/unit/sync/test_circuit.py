"""How sync follows the ministry's endpoint: back-off capped low while it answers, a circuit breaker while it is
down, and rounds that hand their entries back at once when they are cancelled or fail after claiming."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.sync import handlers
from services.sync.domain import (
    DELIVERED,
    PARKED,
    PENDING,
    SENDING,
    Acknowledged,
    Answer,
    Attempt,
    Circuit,
    DeliveryPolicy,
    Failure,
    OutboxEntry,
    after_failure,
    backoff_seconds,
    new_checkpoint_entry,
    new_entry,
)
from services.sync.handlers import Deps
from services.sync.repository import InMemoryOutboxRepository
from tests.unit.sync.conftest import archived, checkpoint_issued, delivered_ids, entry, statuses

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
POLICY = DeliveryPolicy()  # base 2 s, long cap 600 s, low cap 30 s within 60 s of a delivery, 3 rounds, probe 5 s
DELIVERED_ATTEMPT = Attempt(Answer.DELIVERED, 0.1, receipt={"receipt_id": "r-1"})
FAILED = Attempt(Answer.RETRY, 0.1, error="HTTP 503 Service Unavailable")
REFUSED = Attempt(Answer.PARK, 0.1, error="HTTP 409 Conflict")


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


# -- back-off that follows the endpoint --------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "jitter", "answering", "seconds"),
    [
        (1, 0.0, False, 1.0),  # ceiling 2 s: drawn from its upper half
        (1, 0.0, True, 1.0),  # below the low cap the two agree
        (5, 0.0, False, 16.0),  # ceiling 32 s
        (5, 0.0, True, 15.0),  # ceiling held at the low cap, 30 s
        (5, 0.5, True, 22.5),
        (10, 0.0, False, 300.0),  # ceiling 1,024 s held at the long cap, 600 s
        (10, 0.0, True, 15.0),
        (16, 1.0, True, 30.0),  # never more than the low cap while the ministry answers
        (16, 1.0, False, 600.0),
    ],
)
def test_the_back_off_ceiling_is_the_low_cap_while_the_ministry_answers(attempts, jitter, answering, seconds):
    assert backoff_seconds(attempts, jitter, POLICY, answering=answering) == seconds


def test_a_low_cap_above_the_long_cap_does_not_raise_it():
    policy = DeliveryPolicy(cap_seconds=10.0, answering_cap_seconds=30.0)
    assert backoff_seconds(10, 1.0, policy, answering=True) == 10.0


def failed_entry(attempts: int) -> OutboxEntry:
    """A record's entry being sent under claim `c-1` after `attempts` failed attempts."""
    return replace(new_entry(archived(1).records[0], ago(3600)), status=SENDING, attempts=attempts, claim="c-1")


@pytest.mark.parametrize(
    ("circuit", "attempt", "status", "attempts", "wait"),
    [
        # Nothing delivered lately: the long cap (attempt 10: ceiling 600 s, jitter 0: 300 s).
        (Circuit(), FAILED, PENDING, 10, 300.0),
        (Circuit(delivered_at=ago(61)), FAILED, PENDING, 10, 300.0),
        # Another entry delivered within the last minute: the low cap (30 s ceiling, 15 s).
        (Circuit(delivered_at=ago(10)), FAILED, PENDING, 10, 15.0),
        (Circuit(delivered_at=ago(60)), FAILED, PENDING, 10, 15.0),
        # A permanent answer parks whatever the endpoint does.
        (Circuit(delivered_at=ago(10)), REFUSED, PARKED, 10, None),
        (Circuit(3, ago(30), NOW), REFUSED, PARKED, 10, None),
        # The circuit open: the attempt is not counted and the entry waits for the ministry, not for a back-off.
        (Circuit(3, ago(30), NOW), FAILED, PENDING, 9, 0.0),
    ],
)
def test_after_a_failure_the_entry_waits_as_the_endpoint_behaves(circuit, attempt, status, attempts, wait):
    failure = after_failure(failed_entry(9), attempt, NOW, 0.0, POLICY, circuit)
    expected_at = None if wait is None else NOW + timedelta(seconds=wait)
    assert failure == Failure("hb-79000701-0000:1", "c-1", status, attempts, attempt.error, expected_at)


def test_the_last_attempt_parks_while_the_ministry_answers_others():
    failure = after_failure(failed_entry(POLICY.max_attempts - 1), FAILED, NOW, 0.0, POLICY, Circuit(delivered_at=ago(5)))
    assert (failure.status, failure.attempts) == (PARKED, POLICY.max_attempts)


# -- the circuit breaker ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "answers", "after"),
    [
        # No request sent: nothing learnt.
        (Circuit(2, delivered_at=ago(5)), [], Circuit(2, delivered_at=ago(5))),
        # A delivery closes the circuit and is remembered.
        (Circuit(2), [FAILED, DELIVERED_ATTEMPT], Circuit(delivered_at=NOW)),
        (Circuit(7, ago(60), ago(1)), [DELIVERED_ATTEMPT], Circuit(delivered_at=NOW)),
        # A refusal shows the endpoint is up: closed, but nothing delivered.
        (Circuit(2, delivered_at=ago(90)), [REFUSED, FAILED], Circuit(delivered_at=ago(90))),
        (Circuit(5, ago(60), ago(1)), [REFUSED], Circuit()),
        # Every request failed: counted, and open at the third round in a row, the first probe 5 s later.
        (Circuit(), [FAILED, FAILED], Circuit(1)),
        (Circuit(1, delivered_at=ago(90)), [FAILED], Circuit(2, delivered_at=ago(90))),
        (Circuit(2, delivered_at=ago(90)), [FAILED], Circuit(3, NOW, NOW + timedelta(seconds=5), ago(90))),
        # Open, a failed probe: still open since it opened, the next probe 5 s on.
        (Circuit(3, ago(60), ago(1)), [FAILED], Circuit(4, ago(60), NOW + timedelta(seconds=5))),
    ],
)
def test_the_circuit_follows_the_rounds_of_answers(before, answers, after):
    assert before.after_round(answers, NOW, POLICY) == after


@pytest.mark.parametrize(
    ("circuit", "allowed"),
    [
        (Circuit(), 100),
        (Circuit(2), 100),
        (Circuit(3, ago(60), NOW), 1),  # open, a probe due
        (Circuit(3, ago(60), ago(1)), 1),
        (Circuit(3, ago(60), NOW + timedelta(seconds=1)), 0),  # open, the next probe not yet due
    ],
)
def test_an_open_circuit_lets_one_probe_through_when_it_is_due(circuit, allowed):
    assert circuit.allowance(100, NOW) == allowed


def test_a_probe_under_way_holds_back_the_next_one():
    probing = Circuit(3, ago(60), NOW).probing(NOW, POLICY)
    assert probing.allowance(100, NOW) == 0
    assert probing.allowance(100, NOW + timedelta(seconds=5)) == 1
    assert Circuit(2).probing(NOW, POLICY) == Circuit(2)


# -- the relay with the circuit breaker ----------------------------------------------------------


@pytest.fixture
def breaking(deps: Deps) -> Deps:
    """sync with the circuit breaker as deployed: open after three rounds in which every request failed."""
    return replace(deps, policy=replace(deps.policy, circuit_rounds=3, probe_seconds=5.0, max_attempts=16))


def circuit_open(registry) -> float | None:
    return registry.get_sample_value("hocba_sync_ministry_circuit_open")


async def test_while_the_ministry_is_down_the_relay_only_probes_and_resumes_at_its_first_answer(
    breaking, repo, store, clock, registry
):
    deps = breaking
    store.fail_next = 10_000
    await handlers.accept_archived(archived(5), deps)  # round 1: five requests, all fail
    for _ in range(2):  # rounds 2 and 3, each once every entry's back-off ran out
        clock.advance(60)
        await handlers.deliver_due(deps)
    assert store.requests == 15
    assert circuit_open(registry) == 1
    attempts = {key: e.attempts for key, e in (await repo.entries(await statuses(repo))).items()}
    assert set(attempts.values()) == {2}, "the round that opened the circuit counted its attempts"

    # Open: a round a second sends nothing until a probe is due, then one entry; no attempt is counted.
    clock.advance(1)
    await handlers.deliver_due(deps)
    assert store.requests == 15
    for _ in range(3):
        clock.advance(deps.policy.probe_seconds)
        await handlers.deliver_due(deps)
    assert store.requests == 18
    assert {key: e.attempts for key, e in (await repo.entries(attempts)).items()} == attempts
    assert circuit_open(registry) == 1

    # The ministry is back: the next probe goes through, the circuit closes, and every entry is due at once,
    # whatever its back-off said, so the relay goes on at once (`again`) and delivers them all.
    store.fail_next = 0
    clock.advance(deps.policy.probe_seconds)
    probe = await handlers.deliver_due(deps)
    assert len(delivered_ids(probe)) == 1 and probe.again
    assert circuit_open(registry) == 0
    rest = await handlers.deliver_due(deps)
    assert len(delivered_ids(rest)) == 4
    assert set((await statuses(repo)).values()) == {DELIVERED}
    assert store.stats()["accepted"] == 5


async def test_records_taken_in_while_the_circuit_is_open_wait_for_the_ministry_without_attempts(
    breaking, repo, store, clock, registry
):
    deps = breaking
    store.fail_next = 10_000
    await handlers.accept_archived(archived(1), deps)
    for _ in range(2):
        clock.advance(60)
        await handlers.deliver_due(deps)
    assert circuit_open(registry) == 1
    sent = store.requests

    await handlers.accept_archived(archived(3, school="79000703"), deps)
    assert store.requests == sent, "nothing goes before the next probe is due"
    clock.advance(deps.policy.probe_seconds)
    await handlers.accept_archived(archived(4), deps)  # three new record versions, and the first one again
    assert store.requests == sent + 1, "only one entry goes, as the probe that was due"
    waiting = (await repo.entries(await statuses(repo))).values()
    assert {e.status for e in waiting} == {PENDING}
    assert sorted(e.attempts for e in waiting) == [0, 0, 0, 0, 0, 0, 2]


async def test_a_flaky_ministry_keeps_the_back_off_of_a_much_failed_entry_under_the_low_cap(breaking, repo, store, clock):
    deps = replace(breaking, policy=replace(breaking.policy, cap_seconds=600.0))
    unlucky = replace(new_entry(archived(1, school="79000703").records[0], clock.now), attempts=9)
    await repo.add_new([unlucky])
    await handlers.accept_archived(archived(3), deps)  # the others are delivered: the ministry answers
    store.fail_next = 1
    await handlers.deliver_due(deps)

    waiting = await entry(repo, unlucky.key)
    assert (waiting.status, waiting.attempts) == (PENDING, 10)
    assert waiting.next_attempt_at == clock.now + timedelta(seconds=15)  # not 300 s: the ministry answers others


# -- rounds interrupted after claiming ---------------------------------------------------------


class Hanging:
    """A ministry that takes the requests and never answers, until the round is cancelled."""

    def __init__(self) -> None:
        self.sent = asyncio.Event()

    async def deliver(self, items: list[tuple[str, str, dict[str, Any]]]) -> list[Attempt]:
        self.sent.set()
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    async def acknowledgements(self, kind: str) -> AsyncIterator[Acknowledged]:
        return
        yield


async def test_a_round_cancelled_while_sending_hands_its_entries_back_at_once(deps, repo, store, clock):
    hanging = Hanging()
    accepting = asyncio.create_task(handlers.accept_archived(archived(3), replace(deps, ministry=hanging)))
    await hanging.sent.wait()
    assert set((await statuses(repo)).values()) == {SENDING}
    accepting.cancel()  # the broker connection lost: the handler cancelled in flight
    with pytest.raises(asyncio.CancelledError):
        await accepting

    released = (await repo.entries(await statuses(repo))).values()
    assert {(e.status, e.attempts, e.claim, e.next_attempt_at) for e in released} == {(PENDING, 0, None, clock.now)}
    relayed = await handlers.deliver_due(deps)  # the same instant: no lease to wait out
    assert delivered_ids(relayed) == [f"hb-79000701-{i:04d}" for i in range(3)]
    assert store.stats()["accepted"] == 3


class Unrecorded(InMemoryOutboxRepository):
    """An outbox that takes claims but cannot record the answers once (the database gone away mid-round)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True

    async def record_answers(self, claim, receipts, failures):
        if self.broken:
            self.broken = False
            raise ConnectionError("the database went away")
        return await super().record_answers(claim, receipts, failures)


async def test_a_round_failing_after_claiming_hands_its_entries_back_at_once(deps, store, clock):
    repo = Unrecorded()
    deps = replace(deps, repo=repo)
    with pytest.raises(ConnectionError):
        await handlers.accept_archived(archived(2), deps)
    assert set((await statuses(repo)).values()) == {PENDING}

    relayed = await handlers.deliver_due(deps)
    assert delivered_ids(relayed) == ["hb-79000701-0000", "hb-79000701-0001"]
    assert store.stats()["duplicates"] == 2, "the ministry had stored them: the resend is answered idempotently"


class ClaimCut(InMemoryOutboxRepository):
    """An outbox whose claim is taken but whose answer never reaches the sender (cancelled inside `claim()`)."""

    async def claim(self, keys, now, lease_until, claim, limit):
        await super().claim(keys, now, lease_until, claim, limit)
        raise asyncio.CancelledError


async def test_a_round_cancelled_inside_claim_hands_back_what_it_took_without_knowing_it(deps, clock):
    repo = ClaimCut()
    with pytest.raises(asyncio.CancelledError):
        await handlers.accept_archived(archived(2), replace(deps, repo=repo))
    released = (await repo.entries(await statuses(repo))).values()
    assert {(e.status, e.claim, e.next_attempt_at) for e in released} == {(PENDING, None, clock.now)}


class CutOff:
    """The archive over a broker whose connection dropped while the request waited: its answer future cancelled."""

    async def consistency(self, first: int, second: int) -> list[str]:
        raise asyncio.CancelledError


async def test_a_request_cancelled_under_a_round_does_not_strand_the_rounds_entries_for_a_lease(deps, repo, clock):
    await handlers.accept_checkpoint(checkpoint_issued(3), deps)
    await repo.add_new([new_checkpoint_entry(checkpoint_issued(5).checkpoint, clock.now)])
    await repo.add_new([new_entry(r, clock.now) for r in archived(2).records])

    relayed = await handlers.deliver_due(replace(deps, archive=CutOff()))

    assert delivered_ids(relayed) == ["hb-79000701-0000", "hb-79000701-0001"]
    waiting = await entry(repo, "checkpoint:hocba.test/archive:5")
    assert (waiting.status, waiting.attempts) == (PENDING, 1)
    assert "no consistency proof from tree size 3 to 5 now: CancelledError" in waiting.last_error
