"""Checkpoints timestamped by an RFC 3161 TSA (the development one, served over HTTP): stamped when signed, kept and
stamped later while the TSA is down, renewed over the old token (RFC 4998 as the model) without breaking old proofs."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from typer.testing import CliRunner

from hocba.cli import app
from hocba.infra import free_port
from hocba.tsa import from_pki
from services.archive import domain, handlers
from services.archive.app import stamping_from
from services.archive.handlers import Deps
from services.archive.http import public_routes
from shared.contracts.archive import ExportRecord, RenewTimestamps
from shared.contracts.signing import RecordsCompleted
from shared.crypto.bundle import verify_bundle
from shared.crypto.pki import TSA_SUBJECT, tsa_holder
from shared.crypto.timestamps import checkpoint_bytes, verify_chain, verify_timestamp
from shared.errors import Forbidden, InvalidMessage
from shared.settings import Settings
from tests.tsa import serving
from tests.unit.signing.trust import SCHOOL, Trust, make_trust, signed_record

from .conftest import archive_deps


@pytest.fixture
def own_trust(tmp_path) -> Trust:
    """A PKI of this test's own: renewal tests issue the TSA a new certificate."""
    return make_trust(tmp_path)


def with_tsa(deps: Deps, trust: Trust, url: str) -> Deps:
    """`deps` timestamping with the TSA at `url`, its tokens checked as the archive's composition root does."""
    settings = Settings(pki_dir=trust.pki.folder, pki_passphrase="test passphrase", tsa_url=url, tsa_timeout_seconds=2)
    return replace(deps, stamping=stamping_from(settings))


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/"


def sample(registry, name: str, labels: dict | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


async def archived_and_checkpointed(deps: Deps, trust: Trust, records: int = 3):
    start = len(await deps.repo.leaf_hashes())
    signed = [signed_record(trust, n, 1) for n in range(start, start + records)]
    await handlers.archive_records(RecordsCompleted(records=signed), deps)
    checkpoint = await handlers.new_checkpoint(deps)
    assert checkpoint is not None
    return checkpoint


async def exported(deps: Deps, trust: Trust, record_id: str = "rec-0001") -> dict:
    outcome = await handlers.export_record(trust.staff.operator().signs(ExportRecord(record_id=record_id)), deps)
    return outcome.reply.bundle


def renew(trust: Trust, until: datetime, algorithm: str = "sha256", **fields) -> RenewTimestamps:
    return trust.staff.operator().signs(RenewTimestamps(until=until, algorithm=algorithm, **fields))


def failures(verdict) -> list[str]:
    return [text for s in verdict.sections for ok, text in s.lines if not ok]


async def test_a_checkpoint_is_timestamped_as_it_is_signed_and_its_bundle_says_when_it_existed(trust, registry):
    with serving(from_pki(trust.pki)) as url:
        deps = with_tsa(archive_deps(trust, registry=registry), trust, url)
        checkpoint = await archived_and_checkpointed(deps, trust)
        [row] = await deps.repo.timestamps(checkpoint.tree_size)
        bundle = await exported(deps, trust)

    stated = verify_timestamp(row.token, checkpoint_bytes(checkpoint.model_dump(mode="json")), trust.pki.anchors())
    assert (row.index, row.gen_time, row.hash_algorithm) == (0, stated.gen_time, "sha256")
    assert sample(registry, "hocba_archive_timestamps_total", {"outcome": "stamped"}) == 1
    assert bundle["checkpoint_timestamps"] == [base64.b64encode(row.token).decode()]
    verdict = verify_bundle(bundle, trust.pki.trust_store())
    assert verdict.ok, failures(verdict)
    assert [t.gen_time for t in verdict.timestamps] == [row.gen_time]
    assert "the checkpoint existed by" in verdict.relied_on and "RFC 3161" in verdict.relied_on
    assert any("whose certificate was valid then" in text for s in verdict.sections for _, text in s.lines)


async def test_a_tsa_that_is_down_stops_nothing_the_checkpoint_waits_and_is_stamped_later(trust, registry):
    deps = with_tsa(archive_deps(trust, registry=registry), trust, dead_url())
    checkpoint = await archived_and_checkpointed(deps, trust)

    assert await deps.repo.checkpoint(checkpoint.tree_size) == checkpoint, "the checkpoint is kept"
    assert await deps.repo.timestamps(checkpoint.tree_size) == []
    assert sample(registry, "hocba_archive_timestamps_total", {"outcome": "tsa-unavailable"}) == 1
    later = await archived_and_checkpointed(replace(deps), trust, records=5)
    assert sample(registry, "hocba_archive_timestamps_total", {"outcome": "tsa-unavailable"}) == 1, (
        "while the TSA is failing, a new checkpoint does not wait for its timeout: the loop asks"
    )
    await handlers.stamp_owed(deps)
    assert sample(registry, "hocba_archive_checkpoints_unstamped") == 2
    assert sample(registry, "hocba_archive_timestamps_total", {"outcome": "tsa-unavailable"}) == 2

    with serving(from_pki(trust.pki)) as url:
        back = replace(with_tsa(deps, trust, url), log=deps.log)
        outcome = await handlers.stamp_owed(back)

    assert not outcome.again
    assert [len(await deps.repo.timestamps(c.tree_size)) for c in (checkpoint, later)] == [1, 1]
    assert sample(registry, "hocba_archive_checkpoints_unstamped") == 0
    assert sample(registry, "hocba_archive_checkpoint_unstamped_age_seconds") == 0
    assert await deps.repo.unstamped_checkpoints(datetime.now(UTC) + timedelta(days=1), 10) == []


async def test_renewal_chains_a_new_token_over_the_old_and_every_old_proof_stays_verifiable(own_trust, registry):
    trust = own_trust
    first_tsa = trust.pki.certificate(TSA_SUBJECT)
    with serving(from_pki(trust.pki)) as url:
        deps = with_tsa(archive_deps(trust, registry=registry), trust, url)
        checkpoint = await archived_and_checkpointed(deps, trust)
        before = await exported(deps, trust)
    assert verify_bundle(before, trust.pki.trust_store()).ok

    trust.pki.create([tsa_holder()], renew=[TSA_SUBJECT])  # the TSA's certificate is renewed, with a new key
    until = first_tsa.not_valid_after_utc
    with serving(from_pki(trust.pki)) as url:
        renewing = replace(with_tsa(deps, trust, url), log=deps.log)
        progress = (await handlers.renew_timestamps(renew(trust, until), renewing)).reply
        again = (await handlers.renew_timestamps(renew(trust, until), renewing)).reply
        after = await exported(renewing, trust)

    assert (progress.examined, progress.renewed, progress.stamped, progress.next_after) == (1, 1, 0, None)
    assert progress.tsa_not_after == trust.pki.certificate(TSA_SUBJECT).not_valid_after_utc
    assert (again.examined, again.renewed, again.stamped) == (1, 0, 0), "asking again renews nothing"
    chain = await deps.repo.timestamps(checkpoint.tree_size)
    assert [row.index for row in chain] == [0, 1]
    assert sample(registry, "hocba_archive_timestamps_total", {"outcome": "renewed"}) == 1
    store = trust.pki.trust_store()
    old, new = verify_bundle(before, store), verify_bundle(after, store)
    assert old.ok and new.ok, failures(old) + failures(new)
    assert (
        len(after["checkpoint_timestamps"]) == 2
        and after["checkpoint_timestamps"][0] == before["checkpoint_timestamps"][0]
    )
    assert new.timestamps[0].gen_time == old.timestamps[0].gen_time, "the time proven stays the first token's"
    assert "renewed 1 time" in new.relied_on
    subject = checkpoint_bytes(checkpoint.model_dump(mode="json"))
    assert [t.gen_time for t in verify_chain(subject, [r.token for r in chain], trust.pki.anchors())] == [
        r.gen_time for r in chain
    ]


async def renewed_bundle(trust, algorithm: str) -> dict:
    """A record's bundle once its checkpoint's timestamp was renewed under `algorithm` by a TSA with a new certificate."""
    with serving(from_pki(trust.pki)) as url:
        deps = with_tsa(archive_deps(trust), trust, url)
        await archived_and_checkpointed(deps, trust)
        trust.pki.create([tsa_holder()], renew=[TSA_SUBJECT])
        await handlers.renew_timestamps(renew(trust, datetime.now(UTC), algorithm=algorithm), deps)
        return await exported(deps, trust)


async def test_a_tampered_chain_of_timestamps_fails(own_trust):
    trust = own_trust
    bundle = await renewed_bundle(trust, "sha512")
    store = trust.pki.trust_store()
    first, renewal = bundle["checkpoint_timestamps"]
    assert verify_bundle(bundle, store).ok

    tampered = {
        "renewal only": [renewal],
        "order swapped": [renewal, first],
        "first twice": [first, first],
        "a byte changed": [first, base64.b64encode(base64.b64decode(renewal)[:-3] + b"\x00\x00\x00").decode()],
        "not base64": [first, "%%%"],
    }
    for how, stamps in tampered.items():
        failed = failures(verify_bundle({**bundle, "checkpoint_timestamps": stamps}, store))
        assert any("timestamps" in text for text in failed), (how, failed)
    other_checkpoint = {**bundle, "checkpoint": {**bundle["checkpoint"], "issued_at": "2020-01-01T00:00:00.000Z"}}
    assert any("timestamps do not hold" in t for t in failures(verify_bundle(other_checkpoint, store)))


async def test_renewal_to_a_stronger_digest_and_a_checkpoint_without_a_timestamp_gets_its_first(trust):
    with serving(from_pki(trust.pki)) as url:
        deps = with_tsa(archive_deps(trust), trust, url)
        stamped = await archived_and_checkpointed(deps, trust)
    deps = with_tsa(deps, trust, dead_url())
    unstamped = await archived_and_checkpointed(deps, trust, records=4)
    with serving(from_pki(trust.pki)) as url:
        deps = with_tsa(deps, trust, url)
        progress = (await handlers.renew_timestamps(renew(trust, datetime.now(UTC), "sha512"), deps)).reply

    assert (progress.examined, progress.renewed, progress.stamped) == (2, 1, 1)
    assert [r.hash_algorithm for r in await deps.repo.timestamps(stamped.tree_size)] == ["sha256", "sha512"]
    assert [r.hash_algorithm for r in await deps.repo.timestamps(unstamped.tree_size)] == ["sha512"]


async def test_renewal_goes_a_request_at_a_time_and_says_where_to_go_on(trust):
    with serving(from_pki(trust.pki)) as url:
        deps = with_tsa(archive_deps(trust), trust, url)
        sizes = [(await archived_and_checkpointed(deps, trust, records=n)).tree_size for n in (1, 2, 3)]
        first = (await handlers.renew_timestamps(renew(trust, datetime.now(UTC), "sha384", limit=2), deps)).reply
        rest = (
            await handlers.renew_timestamps(renew(trust, datetime.now(UTC), "sha384", after=first.next_after), deps)
        ).reply

    assert (first.examined, first.renewed, first.total, first.remaining, first.next_after) == (2, 2, 3, 1, sizes[1])
    assert (rest.examined, rest.renewed, rest.remaining, rest.next_after) == (1, 1, 0, None)


async def test_renewal_by_a_tsa_whose_certificate_would_not_outlive_the_date_is_refused(trust):
    with serving(from_pki(trust.pki)) as url:
        deps = with_tsa(archive_deps(trust), trust, url)
        checkpoint = await archived_and_checkpointed(deps, trust)
        far = trust.pki.certificate(TSA_SUBJECT).not_valid_after_utc + timedelta(days=1)
        with pytest.raises(InvalidMessage, match="renew the TSA's certificate"):
            await handlers.renew_timestamps(renew(trust, far), deps)

    assert len(await deps.repo.timestamps(checkpoint.tree_size)) == 1, "nothing was renewed with it"


async def test_attack_only_an_operator_may_renew_the_timestamps(trust):
    deps = with_tsa(archive_deps(trust), trust, dead_url())
    command = trust.staff.principal(SCHOOL).signs(RenewTimestamps(until=datetime.now(UTC)))
    with pytest.raises(Forbidden):
        await handlers.renew_timestamps(command, deps)


def test_a_timestamp_is_renewed_before_its_tsa_certificate_expires_or_when_its_digest_is_weaker():
    until = datetime(2030, 1, 1, tzinfo=UTC)
    assert domain.renewal_reason(None, None, until, "sha256") == "no timestamp yet"
    assert "expires 2029-12-31" in domain.renewal_reason(datetime(2029, 12, 31, tzinfo=UTC), "sha512", until, "sha256")
    assert "weaker than sha512" in domain.renewal_reason(datetime(2031, 1, 1, tzinfo=UTC), "sha256", until, "sha512")
    assert domain.renewal_reason(datetime(2031, 1, 1, tzinfo=UTC), "sha512", until, "sha256") is None, (
        "never downgraded"
    )


async def test_hocba_verify_states_the_time_the_verdict_rests_on_and_the_chain_of_renewals(own_trust, tmp_path):
    trust = own_trust
    bundle = await renewed_bundle(trust, "sha384")
    genuine, tampered = tmp_path / "genuine.json", tmp_path / "tampered.json"
    genuine.write_text(json.dumps(bundle))
    tampered.write_text(json.dumps({**bundle, "checkpoint_timestamps": bundle["checkpoint_timestamps"][::-1]}))

    said = CliRunner().invoke(
        app, ["verify", str(genuine), "--anchor", str(trust.pki.anchor_path)], env={"COLUMNS": "1000"}
    )
    assert said.exit_code == 0, said.output
    assert "RFC 3161 timestamp: the signed checkpoint existed by" in said.output
    assert "renewal 1 at" in said.output and "(sha384)" in said.output
    assert "time relied on" in said.output and "renewed 1 time, last at" in said.output
    refused = CliRunner().invoke(
        app, ["verify", str(tampered), "--anchor", str(trust.pki.anchor_path)], env={"COLUMNS": "1000"}
    )
    assert refused.exit_code == 1 and "timestamps do not hold" in refused.output


async def test_the_public_checkpoint_routes_serve_each_checkpoints_tokens(trust):
    with serving(from_pki(trust.pki)) as url:
        deps = with_tsa(archive_deps(trust), trust, url)
        checkpoint = await archived_and_checkpointed(deps, trust)
    transport = httpx.ASGITransport(app=public_routes(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://archive.test") as client:
        latest = (await client.get("/v1/log/checkpoint")).json()
        sized = (await client.get(f"/v1/log/checkpoints/{checkpoint.tree_size}")).json()

    assert latest == sized
    [token] = sized["timestamps"]
    subject = checkpoint_bytes(sized["checkpoint"])
    assert verify_timestamp(base64.b64decode(token), subject, trust.pki.anchors()).tsa == (
        "hocba development time-stamping authority"
    )
