"""What sync believes: only what the archive vouches for reaches the ministry; only operators ask sync.

The broker is not a trust boundary (issue 9). Anyone with a broker login could publish a
`RecordsArchived` event with a made-up record and digest, and sync delivered it to the ministry,
which issued a receipt; anyone could ask sync for its status or a reconciliation. Now an archived
record version enters the outbox only when the archive's seal on its announcement verifies against
the PKI and its document is the one its digest names; a checkpoint only when the archive's certificate signed
it; and each operator's request carries an operator's token for that request and for sync.

Tests named `test_attack_...` replay those attacks: each fails on the code before the change (828f9ba).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest

from hocba.staff import Staff
from services.sync import domain, handlers
from services.sync.domain import PARKED, checkpoint_problems, vouched_for
from shared.auth import IssuerKey
from shared.contracts.archive import ArchivedRecord, CheckpointIssued, RecordsArchived
from shared.contracts.base import Message
from shared.contracts.record import content_of
from shared.contracts.sync import GetSyncStatus, Reconcile, RetryParked
from shared.crypto.pki import DevPki, service_holders
from shared.crypto.seal import seal_problems
from shared.errors import Forbidden, InvalidMessage
from shared.outcome import Outcome
from tests.unit.sync.conftest import OPERATOR, STAFF, archived, checkpoint_issued, stats, statuses
from tests.unit.sync.sealed import announced, archived_record, dev_pki, foreign_pki, signed_checkpoint, trust

#: What a record of these tests says about its student: none of it may appear in a refusal.
PERSONAL = ("0792120", "Lê Minh Châu")
MADE_UP = "f" * 64


def genuine() -> RecordsArchived:
    """The archive's announcement of one archived version, under its seal."""
    return archived(1)


def top_marks(record: ArchivedRecord) -> dict:
    return {**record.document, "learning_result": {"year": "Tốt"}, "awards": ["Học sinh Xuất sắc"]}


def with_record(event: RecordsArchived, **changes: object) -> RecordsArchived:
    """`event` with its one record changed and its seal kept as it was."""
    [record] = event.records
    return event.model_copy(update={"records": [record.model_copy(update=changes)]})


# Each forgery of an announcement of one archived version, and what sync says is wrong with it.
FORGERIES: dict[str, tuple[Callable[[RecordsArchived], RecordsArchived], list[str]]] = {
    "a made-up digest and no seal (the issue's reproduction)": (
        lambda e: with_record(e, digest=MADE_UP, content=content_of(top_marks(e.records[0]))).model_copy(
            update={"seal": None}
        ),
        ["it carries no seal by archive", "its document does not match its digest"],
    ),
    "no seal": (
        lambda e: e.model_copy(update={"seal": None}),
        ["it carries no seal by archive"],
    ),
    "sealed by another certificate of the PKI (grades')": (
        lambda e: announced(e.records, dev_pki().signer("svc-grades")),
        ["it is sealed by 'svc-grades', not by archive"],
    ),
    "sealed by an archive certificate of another PKI": (
        lambda e: announced(e.records, foreign_pki().signer("archive")),
        ["its seal's certificate:"],
    ),
    "a genuine seal, and a document that does not match its digest": (
        lambda e: with_record(e, content=content_of(top_marks(e.records[0]))),
        ["its document does not match its digest"],
    ),
    "a genuine seal, and a made-up digest with its own document": (
        lambda e: with_record(e, digest=MADE_UP),
        ["its seal does not verify over what it says", "its document does not match its digest"],
    ),
    "a genuine seal, moved to another record version": (
        lambda e: with_record(e, version=2),
        ["its seal does not verify over what it says"],
    ),
    "a genuine seal of another announcement": (
        lambda e: e.model_copy(update={"seal": archived(2).seal}),
        ["its seal does not verify over what it says"],
    ),
}


def forged(name: str) -> RecordsArchived:
    forge, _ = FORGERIES[name]
    return forge(genuine())


# -- the rule ---------------------------------------------------------------------------------


def test_a_record_version_announced_under_the_archives_seal_with_its_own_document_is_vouched_for(clock):
    vouched = vouched_for(genuine(), trust(), clock.now)
    assert vouched.records == genuine().records and vouched.refused == []


@pytest.mark.parametrize("name", FORGERIES)
def test_a_forged_record_version_is_not_vouched_for_and_sync_says_why(clock, name):
    _, expected = FORGERIES[name]
    [(_, problems)] = vouched_for(forged(name), trust(), clock.now).refused
    assert len(problems) == len(expected)
    assert all(p.startswith(e) for p, e in zip(problems, expected, strict=True)), problems


def test_one_seal_vouches_for_the_whole_announcement_or_for_none_of_it(clock):
    """The seal covers every version's fields: a version slipped into a sealed announcement voids it whole."""
    event = archived(3)
    slipped = archived_record("hb-79000701-0099", 99, top_marks(event.records[0]))
    vouched = vouched_for(event.model_copy(update={"records": [*event.records, slipped]}), trust(), clock.now)
    assert vouched.records == []
    assert [r.record_id for r, _ in vouched.refused] == [*(r.record_id for r in event.records), "hb-79000701-0099"]


def test_under_a_good_seal_a_version_whose_document_is_not_its_digests_is_refused_alone(clock):
    event = archived(3)
    changed = event.records[1].model_copy(update={"content": content_of(top_marks(event.records[1]))})
    vouched = vouched_for(event.model_copy(update={"records": [event.records[0], changed, event.records[2]]}), trust(), clock.now)
    assert [r.record_id for r in vouched.records] == ["hb-79000701-0000", "hb-79000701-0002"]
    assert vouched.explanation() == "hb-79000701-0001 v1: its document does not match its digest"


def test_one_seal_is_checked_for_a_whole_announcement(clock, monkeypatch):
    checked = []
    monkeypatch.setattr(domain, "seal_problems", lambda *args: checked.append(args) or seal_problems(*args))
    assert len(vouched_for(archived(5), trust(), clock.now).records) == 5
    assert len(checked) == 1, "one seal check for the announcement, not one for each record"


def test_the_refusal_names_the_record_version_and_why_never_what_the_record_says(clock):
    vouched = vouched_for(forged("no seal"), trust(), clock.now)
    assert vouched.records == []
    assert vouched.explanation() == "hb-79000701-0000 v1: it carries no seal by archive"
    assert not any(p in vouched.explanation() for p in PERSONAL)


def test_a_checkpoint_signed_by_the_archive_is_vouched_for():
    assert checkpoint_problems(checkpoint_issued().checkpoint, trust()) == []


# -- records ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FORGERIES)
async def test_attack_a_forged_records_archived_event_gets_no_ministry_receipt(deps, repo, store, name, caplog):
    """Reproduction (issue 9, 2): a RecordsArchived event nobody sealed, published by anyone with a broker login."""
    event = forged(name)
    with caplog.at_level(logging.WARNING, logger="hocba.sync"):
        outcome = await handlers.accept_archived(event, deps)

    assert store.stats() == stats(), "the forged record reached the ministry"
    assert await statuses(repo) == {}, "the forged record entered the outbox"
    assert not outcome.publish
    [part] = outcome.rejected
    assert (part.field, list(part.items), part.reason) == ("records", event.records, "invalid")
    assert part.explanation.startswith(f"not vouched for by the archive: hb-79000701-0000 v{event.records[0].version}: ")
    assert not any(p in part.explanation or p in caplog.text for p in PERSONAL)


async def test_attack_a_copy_of_a_genuine_announcement_with_forged_versions_slipped_in_delivers_nothing(deps, repo, store):
    """Reproduction (issue 9, 2): forged versions slipped into an event between genuine ones. The copy is refused
    whole; the genuine announcement still delivers its versions."""
    good = archived(2)
    slipped = archived_record("hb-79000701-0099", 99, top_marks(good.records[0]))
    copy = good.model_copy(update={"records": [good.records[0], slipped, good.records[1]], "message_id": "copy"})
    refused = await handlers.accept_archived(copy, deps)

    assert store.stats() == stats() and await statuses(repo) == {}
    [part] = refused.rejected
    assert list(part.items) == copy.records
    assert "hb-79000701-0099 v1: its seal does not verify over what it says" in part.explanation

    outcome = await handlers.accept_archived(good, deps)
    assert set(store.receipts) == {"hb-79000701-0000:1", "hb-79000701-0001:1"}
    [delivered] = outcome.publish
    assert sorted(d.record_id for d in delivered.deliveries) == ["hb-79000701-0000", "hb-79000701-0001"]


async def test_a_genuine_version_after_a_forged_one_of_the_same_key_is_still_delivered(deps, store):
    """A forgery refused first takes nothing from the genuine version: its key is not in the outbox."""
    await handlers.accept_archived(forged("no seal"), deps)
    outcome = await handlers.accept_archived(genuine(), deps)
    assert [d.record_id for d in outcome.publish[0].deliveries] == ["hb-79000701-0000"]
    assert store.receipts["hb-79000701-0000:1"]["digest"] == genuine().records[0].digest


async def test_a_seal_by_a_revoked_archive_certificate_is_refused(deps, store, clock, tmp_path):
    pki = DevPki(tmp_path / "pki", b"p")
    pki.create(service_holders())
    event = announced(genuine().records, pki.signer("archive"))
    pki.revoke("archive", reason="key_compromise", at=clock.now - timedelta(minutes=1))
    revoked = pki.trust_store()

    outcome = await handlers.accept_archived(event, replace(deps, trust=lambda: revoked))
    assert store.stats() == stats()
    assert "revoked" in outcome.rejected[0].explanation


# -- checkpoints ------------------------------------------------------------------------------


def with_root(event: CheckpointIssued, root_hash: str) -> CheckpointIssued:
    return event.model_copy(update={"checkpoint": event.checkpoint.model_copy(update={"root_hash": root_hash})})


def with_signature(event: CheckpointIssued, signature: str) -> CheckpointIssued:
    return event.model_copy(update={"checkpoint": event.checkpoint.model_copy(update={"signature": signature})})


BAD_CHECKPOINTS: dict[str, tuple[Callable[[], CheckpointIssued], str]] = {
    "a signature that is not one": (
        lambda: with_signature(checkpoint_issued(), "e30..c2ln"),
        "cannot be read",
    ),
    "signed by grades' certificate": (
        lambda: signed_checkpoint(3, signer=dev_pki().signer("svc-grades")),
        "not the archive's",
    ),
    "signed by an archive certificate of another PKI": (
        lambda: signed_checkpoint(3, signer=foreign_pki().signer("archive")),
        "does not lead to a trusted root",
    ),
    "another root hash under the archive's signature": (
        lambda: with_root(checkpoint_issued(), MADE_UP),
        "does not verify",
    ),
}


@pytest.mark.parametrize("name", BAD_CHECKPOINTS)
async def test_attack_a_checkpoint_with_a_bad_signature_is_not_delivered(deps, repo, store, name):
    """Reproduction (issue 9, 2): a checkpoint nobody signed (or somebody else signed), published on the broker."""
    make, why = BAD_CHECKPOINTS[name]
    with pytest.raises(InvalidMessage) as refused:
        await handlers.accept_checkpoint(make(), deps)
    assert refused.value.reason == "invalid"
    assert str(refused.value).startswith("checkpoint hocba.test/archive of size 3 is not vouched for by the archive: ")
    assert why in str(refused.value)
    assert store.checkpoints == {} and store.stats() == stats()
    assert await statuses(repo) == {}


# -- operators --------------------------------------------------------------------------------


async def ask(message: Message, deps) -> Outcome:
    if isinstance(message, GetSyncStatus):
        return await handlers.status(message, deps)
    if isinstance(message, Reconcile):
        return await handlers.reconcile(message, deps)
    assert isinstance(message, RetryParked)
    return await handlers.retry_parked(message, deps)


REQUESTS = [GetSyncStatus, Reconcile, RetryParked]
#: The requests anyone could make before: a retry already needed an operator's token.
OPEN_BEFORE = [GetSyncStatus, Reconcile]
SOMEONE_ELSE = IssuerKey.generate("someone-else")


def unsigned(request: Message) -> Message:
    return request


def by_a_school_admin(request: Message) -> Message:
    return STAFF.school_admin("79000701").signs(request)


def by_a_principal(request: Message) -> Message:
    return STAFF.principal("79000701").signs(request)


def by_an_operator_of_another_issuer(request: Message) -> Message:
    return Staff(SOMEONE_ELSE).operator().signs(request)


def with_a_token_taken_from_another_request(request: Message) -> Message:
    other = OPERATOR.signs(type(request)())
    return request.model_copy(update={"actor": other.actor})


REFUSALS = {
    "no token": (unsigned, "unauthenticated"),
    "a school administrator's token": (by_a_school_admin, "not-an-operator"),
    "a principal's token": (by_a_principal, "not-an-operator"),
    "an operator's token from another issuer": (by_an_operator_of_another_issuer, "unauthenticated"),
    "an operator's token taken from another request": (with_a_token_taken_from_another_request, "unauthenticated"),
}


async def refused_and_nothing_changed(request: Message, reason: str, deps, store, clock, policy) -> None:
    """Two entries parked; `request` is refused with `reason`, and neither the outbox nor the ministry hears of it."""
    store.fail_next = 10_000
    await handlers.accept_archived(archived(2), deps)
    for _ in range(policy.max_attempts):
        clock.advance(policy.cap_seconds)
        await handlers.deliver_due(deps)
    requests_before = store.requests

    with pytest.raises(Forbidden) as refused:
        await ask(request, deps)
    assert refused.value.reason == reason
    assert await statuses(deps.repo) == dict.fromkeys(["hb-79000701-0000:1", "hb-79000701-0001:1"], PARKED)
    assert store.requests == requests_before, "the ministry was asked on behalf of someone refused"


@pytest.mark.parametrize("request_type", OPEN_BEFORE, ids=lambda t: t.__name__)
@pytest.mark.parametrize("how", REFUSALS)
async def test_attack_status_and_reconciliation_without_an_operators_token_are_refused(
    deps, store, clock, policy, request_type, how
):
    """Reproduction (issue 9, 3): `hocba sync status/reconcile` answered anyone on the broker."""
    sign, reason = REFUSALS[how]
    await refused_and_nothing_changed(sign(request_type()), reason, deps, store, clock, policy)


@pytest.mark.parametrize("how", REFUSALS)
async def test_a_retry_without_an_operators_token_is_refused(deps, store, clock, policy, how):
    sign, reason = REFUSALS[how]
    await refused_and_nothing_changed(sign(RetryParked()), reason, deps, store, clock, policy)


@pytest.mark.parametrize("request_type", REQUESTS, ids=lambda t: t.__name__)
async def test_an_operator_is_answered(deps, request_type):
    outcome = await ask(OPERATOR.signs(request_type()), deps)
    assert outcome.reply is not None and outcome.reply.error is None
