"""A certified copy printed against the running services over real RabbitMQ and the MongoDB-wire server: signing signs
and seals a class, the archive keeps it and exports a copy, the school's records administrator has signing put the
school's seal on the copy (`SealCopy`), timestamped by the development TSA over HTTP; the copy verifies offline, and
signing's access log in MongoDB names who had it sealed and why."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime

import httpx
import pytest

from hocba.pades import CopySealing, HttpTimeStamper, check_copy_signature, seal_chain
from hocba.pdf import copy_pdf_bytes
from hocba.tsa import from_pki
from services.archive.app import build_app as archive_app
from services.signing.app import build_app as signing_app
from shared.contracts.archive import ExportRecord, ProofReply
from shared.contracts.grades import RecordsReady
from shared.contracts.signing import BatchCompleted, CopySeal, RecordsCompleted, RequestSignBatch, SealCopy
from shared.crypto.certs import load_crls
from shared.errors import Refused
from tests.reviews import confirm_reviews
from tests.support import collect, probing, running
from tests.tsa import serving
from tests.unit.archive.conftest import archive_keys
from tests.unit.signing.trust import make_trust, record_version

SCHOOL, YEAR = "79000701", "2025-2026"
PURPOSE = "bản sao cho hồ sơ chuyển trường"


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("sealed-copy-integration"))


async def signed_and_archived(signing, settings, trust, count: int) -> None:
    """`count` records of class 6A1 received, reviewed, signed by the homeroom teacher, the principal and the seal."""
    records = [trust.sealed(record_version(n)) for n in range(0, 2 * count, 2)]  # even n: class 6A1
    async with probing(settings, BatchCompleted, RecordsCompleted) as probes:
        await signing.bus.publish(RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records))
        deadline = time.monotonic() + 30
        reviewed = False
        while not reviewed and time.monotonic() < deadline:
            try:
                await confirm_reviews(signing.bus, trust.staff, SCHOOL, YEAR, ("6A1",))
                reviewed = True
            except Refused:
                await asyncio.sleep(0.2)  # the records are not all held yet
        teacher = trust.staff.homeroom_teacher(SCHOOL, "6A1")
        command = RequestSignBatch(school_code=SCHOOL, school_year=YEAR, role="homeroom_teacher", class_name="6A1")
        await signing.bus.publish(teacher.signs(command))
        await collect(settings.amqp_url, probes[BatchCompleted.ROUTING_KEY], BatchCompleted, bool)
        principal = trust.staff.principal(SCHOOL)
        await signing.bus.publish(principal.signs(RequestSignBatch(school_code=SCHOOL, school_year=YEAR)))
        await collect(
            settings.amqp_url,
            probes[RecordsCompleted.ROUTING_KEY],
            RecordsCompleted,
            lambda got: sum(len(m.records) for m in got) >= count,
        )


async def test_a_printed_copy_is_sealed_by_the_signing_service_and_verifies_offline(mongo_client, settings, trust):
    signing = signing_app(
        settings, mongo=mongo_client, signers=trust.checked_signers(), issuer_keys=trust.issuer.public_keys()
    )
    archive = archive_app(
        settings, mongo=mongo_client, keys=archive_keys(trust), issuer_keys=trust.issuer.public_keys()
    )
    admin = trust.staff.school_admin(SCHOOL)
    asked: list[SealCopy] = []
    async with running(signing), running(archive):
        await signed_and_archived(signing, settings, trust, 2)
        export = admin.signs(ExportRecord(record_id="rec-0002", certified_copy=True, purpose=PURPOSE))
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = await signing.bus.request(export, ProofReply, 10)
                break
            except Refused:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)  # not archived yet
        assert reply.bundle is not None and reply.qr is not None

        async def ask(attributes: bytes) -> CopySeal:
            request = SealCopy(
                school_code=SCHOOL,
                record_id="rec-0002",
                version=1,
                signed_attributes=base64.b64encode(attributes).decode(),
                purpose=PURPOSE,
            )
            asked.append(request)
            return await signing.bus.request(admin.signs(request), CopySeal, 10)

        with serving(from_pki(trust.pki)) as tsa_url:
            async with httpx.AsyncClient() as client:
                sealing = CopySealing.of(
                    HttpTimeStamper(tsa_url, 10, client), trust.pki.anchors(), load_crls(trust.pki.crl_path)
                )
                unsigned = copy_pdf_bytes(reply.bundle, reply.qr, datetime.now(UTC))
                copy = await sealing.seal(unsigned, seal_chain(reply.bundle), ask)

        # A version signing does not hold sealed is refused, over the broker, in words.
        not_held = SealCopy(
            school_code=SCHOOL, record_id="rec-0099", version=1, signed_attributes=asked[0].signed_attributes
        )
        with pytest.raises(Refused) as refused:
            await signing.bus.request(admin.signs(not_held), CopySeal, 10)
        assert refused.value.reason == "not-found"

    verdict = check_copy_signature(copy, trust.pki.anchors(), SCHOOL)
    assert verdict.ok, verdict.lines
    assert verdict.timestamped_at is not None
    assert len(asked) == 1, "one seal asked a copy"
    db = mongo_client[settings.names().database("signing")]
    entries = [e async for e in db["access_log"].find({"record_id": "rec-0002"}, {"_id": 0})]
    assert [(e["service"], e["action"], e["subject"], e["purpose"]) for e in entries] == [
        ("signing", "print", f"admin-{SCHOOL}", PURPOSE)
    ]
