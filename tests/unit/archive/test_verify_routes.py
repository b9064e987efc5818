"""The archive's verification page and the copies its addresses name: served without sign-in, a printed copy's
bundle only to whoever holds its address (the leaf index and the start of its leaf hash), a wrong key the same 404 as
no leaf, every look-up counted, no key in a log line. (The browser's checks are tested in tests/e2e/test_verify_page.py.)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from services.archive import handlers, http
from services.archive.http import public_routes
from shared.contracts.signing import RecordsCompleted
from shared.crypto.bundle import address_key, verify_bundle
from shared.errors import Unavailable

AMENDMENT = {"supersedes": 1, "reason": "appeal-decision", "requested_by": "ht-79000701"}


@pytest.fixture
async def public(deps) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=public_routes(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://archive.test") as client:
        yield client


async def archived(deps, records) -> None:
    """Archive `records`, then sign a checkpoint over the log."""
    await handlers.archive_records(RecordsCompleted(records=records), deps)
    await handlers.scheduled_checkpoint(deps)


def counted(deps, route: str, status: int) -> float:
    return deps.metrics.public_reads.labels(route, str(status))._value.get()


async def address_of(deps, record_id: str, version: int = 1) -> str:
    entry = await deps.repo.entry(record_id, version)
    return f"{entry.seq}.{address_key(entry.leaf_hash)}"


async def test_a_copy_address_answers_its_bundle_which_verifies_offline(deps, make_signed, public, trust):
    await archived(deps, [make_signed(n) for n in range(3)])
    answer = await public.get(f"/v1/copies/{await address_of(deps, 'rec-0001')}")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["superseded_by"] is None
    bundle = body["bundle"]
    assert (bundle["record"]["record_id"], bundle["log"]["leaf_index"], bundle["checkpoint"]["tree_size"]) == (
        "rec-0001",
        1,
        3,
    )
    verdict = verify_bundle(bundle, trust.pki.trust_store())
    assert verdict.ok, verdict.failed
    assert counted(deps, "copy", 200) == 1


async def test_each_copy_look_up_is_in_the_access_log_by_the_anonymous_reader_and_a_refused_one_is_not(
    deps, make_signed, public
):
    await archived(deps, [make_signed(n) for n in range(2)])
    address = await address_of(deps, "rec-0001")
    assert (await public.get(f"/v1/copies/{address.split('.')[0]}.{'A' * 16}")).status_code == 404
    assert await deps.access_log.of("student-0001", 10) == []
    assert (await public.get(f"/v1/copies/{address}")).status_code == 200
    logged = await deps.access_log.of("student-0001", 10)
    assert [(e.action, e.subject, e.roles, e.school_code, e.record_id, e.service) for e in logged] == [
        ("verify", "public verification page", [], "", "rec-0001", "archive")
    ]
    assert deps.access.metrics.reads.labels("public")._value.get() == 1
    assert await deps.access_log.of("student-0000", 10) == []


async def test_a_superseded_copy_comes_with_the_bundle_of_the_version_that_supersedes_it(deps, make_signed, public):
    await archived(deps, [make_signed(n) for n in range(2)])
    address = await address_of(deps, "rec-0001")
    await archived(deps, [make_signed(1, 2, amendment=AMENDMENT)])
    body = (await public.get(f"/v1/copies/{address}")).json()
    assert body["bundle"]["status"]["superseded_by"] == 2
    newer = body["superseded_by"]
    assert (newer["record"]["version"], newer["record"]["document"]["amendment"]["supersedes"]) == (2, 1)
    assert newer["checkpoint"] == body["bundle"]["checkpoint"], "both proven in the same signed checkpoint"


async def test_a_wrong_key_no_leaf_an_unreadable_address_and_an_unsigned_leaf_get_the_same_404(
    deps, make_signed, public, monkeypatch
):
    await archived(deps, [make_signed(n) for n in range(2)])
    await handlers.archive_records(RecordsCompleted(records=[make_signed(2)]), deps)  # no checkpoint over it yet
    right = await address_of(deps, "rec-0001")
    index, key = right.split(".")
    compared: list[bytes] = []
    real = http.hmac.compare_digest

    def counting(given: bytes, expected: bytes) -> bool:
        compared.append(given)
        return real(given, expected)

    monkeypatch.setattr(http.hmac, "compare_digest", counting)
    asked = [
        f"1.{('B' if key[0] == 'A' else 'A')}{key[1:]}",  # one character of the key wrong
        f"1.{key[:-1]}",  # the key cut short
        f"7.{key}",  # a leaf the log does not have
        await address_of(deps, "rec-0002"),  # archived, not yet under a signed checkpoint
        "1",  # no key at all
        "x.y",
    ]
    answers = [await public.get(f"/v1/copies/{address}") for address in asked]
    pages = [await public.get(f"/v/{address}") for address in asked]
    assert {a.status_code for a in answers + pages} == {404}
    assert len({a.text for a in answers}) == 1 and len({p.text for p in pages}) == 1, "no answer tells which"
    assert len(compared) == 2 * len(asked), "the key is compared, in constant time, whatever was found"
    assert counted(deps, "copy", 404) == len(asked) and counted(deps, "copy-page", 404) == len(asked)
    assert (await public.get(f"/v1/copies/{right}")).status_code == 200


async def test_the_page_ships_the_trust_anchor_and_its_fingerprint_and_allows_only_its_own_origin(
    deps, make_signed, public, trust
):
    await archived(deps, [make_signed(0)])
    anchor = trust.pki.trust_store().anchors[0].public_bytes(Encoding.DER)
    for path in ("/verify", f"/v/{await address_of(deps, 'rec-0000')}"):
        page = await public.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert f'name="hocba-anchor-sha256" content="{hashlib.sha256(anchor).hexdigest()}"' in page.text
        assert "{{" not in page.text
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "unsafe" not in policy
        assert page.headers["referrer-policy"] == "no-referrer", "the address's key goes nowhere else"
    assert "rec-0000" not in page.text, "the page itself carries no record"
    for asset in ("verify.js", "verify.css"):
        assert (await public.get(f"/verify/{asset}")).status_code == 200
    assert (await public.get("/verify/../http.py")).status_code == 404
    assert (await public.get("/verify/index.html")).status_code == 404
    assert counted(deps, "verify-page", 200) == 1 and counted(deps, "copy-page", 200) == 1
    assert counted(deps, "verify-asset", 200) == 2


async def test_no_log_line_holds_a_copy_key(deps, make_signed, public, caplog):
    await archived(deps, [make_signed(n) for n in range(2)])
    address = await address_of(deps, "rec-0001")
    key = address.split(".")[1]
    with caplog.at_level(logging.DEBUG):
        await public.get(f"/v1/copies/{address}")
        await public.get(f"/v/{address}")
        await public.get(f"/v1/copies/1.{key[:-1]}Z")
    # The asking client (httpx) logs its own requests; the archive's side logs none of the address.
    served = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert key[:-1] not in served


async def test_the_log_entry_at_a_leaf_index(deps, make_signed):
    await archived(deps, [make_signed(n) for n in range(3)])
    entry = await deps.repo.entry_at(2)
    assert entry is not None and (entry.record_id, entry.seq) == ("rec-0002", 2)
    assert await deps.repo.entry_at(3) is None


async def test_a_copy_whose_stored_document_does_not_decrypt_is_a_sentence_not_a_traceback(
    deps, make_signed, public, monkeypatch
):
    await archived(deps, [make_signed(0)])
    address = await address_of(deps, "rec-0000")

    async def unreadable(seq: int) -> None:
        raise Unavailable("rec-0000 v1 does not decrypt: run `hocba archive audit`", reason="unreadable")

    monkeypatch.setattr(deps.repo, "entry_at", unreadable)
    answer = await public.get(f"/v1/copies/{address}")
    assert answer.status_code == 503
    assert answer.json() == {"error": "the archive cannot read this copy now; try again later"}
    assert counted(deps, "copy", 503) == 1
