"""RFC 3161 timestamps: the development TSA (hocba.tsa) answers real requests; shared.crypto.timestamps asks and verifies."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from asn1crypto import algos, tsp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from hocba.tsa import POLICY, TimeStampAuthority, from_pki
from shared.crypto.pki import TSA_SUBJECT, DevPki, service_holders
from shared.crypto.timestamps import (
    TimestampInvalid,
    TimeStampReply,
    TsaUnavailable,
    stamp,
    verify_timestamp,
)
from tests.support import needs
from tests.tsa import serving

#: The time the test TSA states (its certificate is issued an hour back from the test run's start).
GEN_TIME = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def new_pki(folder) -> DevPki:
    pki = DevPki(folder / "pki", b"test passphrase")
    pki.create(service_holders())
    return pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> DevPki:
    return new_pki(tmp_path_factory.mktemp("tsa-pki"))


@pytest.fixture(scope="module")
def tsa_url(pki):
    authority = from_pki(pki)
    authority.clock = lambda: GEN_TIME
    with serving(authority) as url:
        yield url


def query(
    data: bytes, *, algorithm: str = "sha256", nonce: int | None = 0x5EED, cert_req: bool = True, **extra
) -> bytes:
    request = {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": algos.DigestAlgorithm({"algorithm": algorithm}),
            "hashed_message": hashlib.new(algorithm, data).digest(),
        },
        "cert_req": cert_req,
        **extra,
    }
    if nonce is not None:
        request["nonce"] = nonce
    return tsp.TimeStampReq(request).dump()


def post(url: str, body: bytes, content_type: str = "application/timestamp-query") -> httpx.Response:
    return httpx.post(url, content=body, headers={"content-type": content_type})


def test_the_tsa_certificate_may_only_stamp_time(pki):
    cert = pki.certificate(TSA_SUBJECT)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert usage.critical and list(usage.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert oct(pki.key_path(TSA_SUBJECT).stat().st_mode & 0o777) == "0o600"


def test_the_tsa_answers_an_rfc3161_request_over_http(tsa_url, pki):
    response = post(tsa_url, query(b"checkpoint 7"))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/timestamp-reply"
    reply = TimeStampReply.load(response.content)
    assert reply["status"]["status"].native == "granted"
    signed = reply["time_stamp_token"]["content"]
    info = signed["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hashed_message"].native == hashlib.sha256(b"checkpoint 7").digest()
    assert info["nonce"].native == 0x5EED
    assert info["policy"].native == POLICY
    assert info["gen_time"].native == GEN_TIME
    [embedded] = signed["certificates"]
    assert embedded.chosen.dump() == pki.certificate(TSA_SUBJECT).public_bytes(serialization.Encoding.DER)


def test_the_certificate_is_left_out_when_the_request_does_not_ask_for_it(tsa_url):
    reply = TimeStampReply.load(post(tsa_url, query(b"x", cert_req=False)).content)
    assert reply["status"]["status"].native == "granted"
    assert not reply["time_stamp_token"]["content"]["certificates"]


@pytest.mark.parametrize(
    ("body", "fail_info"),
    [
        (query(b"x", algorithm="sha1"), "bad_alg"),
        (query(b"x", req_policy="1.2.3.4"), "unaccepted_policy"),
        (b"\x30\x03\x02\x01\x01", "bad_data_format"),
        (b"not DER at all", "bad_data_format"),
    ],
    ids=["sha1", "foreign-policy", "truncated", "garbage"],
)
def test_a_request_the_tsa_will_not_stamp_is_refused_with_its_reason(tsa_url, body, fail_info):
    response = post(tsa_url, body)
    assert response.status_code == 200  # RFC 3161: the refusal is in the reply
    reply = TimeStampReply.load(response.content)
    assert reply["status"]["status"].native == "rejection"
    assert reply["status"]["fail_info"].native == {fail_info}
    assert not reply["time_stamp_token"].native


def test_a_body_that_is_not_a_timestamp_query_is_refused(tsa_url):
    assert post(tsa_url, query(b"x"), content_type="application/json").status_code == 415


def test_a_token_verifies_against_the_anchor_and_states_its_time(tsa_url, pki):
    token = stamp(tsa_url, b"checkpoint 7")

    stated = verify_timestamp(token, b"checkpoint 7", pki.anchors(), at=GEN_TIME + timedelta(minutes=1))

    assert stated.gen_time == GEN_TIME
    assert "hocba development time-stamping authority" in stated.tsa
    assert stated.hash_algorithm == "sha256"
    assert stated.certificate_not_after == pki.certificate(TSA_SUBJECT).not_valid_after_utc


def test_a_token_over_other_bytes_proves_nothing_about_these(tsa_url, pki):
    token = stamp(tsa_url, b"checkpoint 7")
    with pytest.raises(TimestampInvalid, match="other bytes"):
        verify_timestamp(token, b"checkpoint 8", pki.anchors())


def test_a_token_with_a_changed_byte_does_not_verify(tsa_url, pki):
    token = bytearray(stamp(tsa_url, b"checkpoint 7"))
    token[-5] ^= 0x01  # inside the ECDSA signature
    with pytest.raises(TimestampInvalid):
        verify_timestamp(bytes(token), b"checkpoint 7", pki.anchors())


def test_a_token_from_a_tsa_of_another_pki_is_not_trusted(tmp_path, pki):
    other = new_pki(tmp_path)
    with serving(from_pki(other)) as url:
        token = stamp(url, b"checkpoint 7")
    verify_timestamp(token, b"checkpoint 7", other.anchors())
    with pytest.raises(TimestampInvalid, match="not trusted"):
        verify_timestamp(token, b"checkpoint 7", pki.anchors())


def test_a_certificate_without_time_stamping_usage_cannot_stamp(tmp_path, pki):
    key = serialization.load_pem_private_key(pki.key_path("archive").read_bytes(), pki.passphrase)
    impostor = TimeStampAuthority(pki.certificate("archive"), key)  # type: ignore[arg-type]
    with serving(impostor) as url:
        token = stamp(url, b"checkpoint 7")
    with pytest.raises(TimestampInvalid):
        verify_timestamp(token, b"checkpoint 7", pki.anchors())


def test_a_token_stating_a_time_before_its_tsa_certificate_was_issued_does_not_verify(pki):
    authority = from_pki(pki)
    authority.clock = lambda: pki.certificate(TSA_SUBJECT).not_valid_before_utc - timedelta(days=1)
    with serving(authority) as url:
        token = stamp(url, b"checkpoint 7")
    with pytest.raises(TimestampInvalid, match="not trusted"):
        verify_timestamp(token, b"checkpoint 7", pki.anchors())


def test_a_token_whose_tsa_certificate_was_revoked_does_not_verify(tmp_path):
    pki = new_pki(tmp_path)
    with serving(from_pki(pki)) as url:
        token = stamp(url, b"checkpoint 7")
    verify_timestamp(token, b"checkpoint 7", pki.anchors(), crls=_crls(pki))
    pki.revoke(TSA_SUBJECT, at=datetime.now(UTC) - timedelta(minutes=5))
    with pytest.raises(TimestampInvalid, match="not trusted"):
        verify_timestamp(token, b"checkpoint 7", pki.anchors(), crls=_crls(pki))


def test_a_tsa_that_does_not_answer_is_unavailable_not_invalid():
    from hocba.infra import free_port

    with pytest.raises(TsaUnavailable, match="did not answer"):
        stamp(f"http://127.0.0.1:{free_port()}/", b"checkpoint 7", timeout=2)


def test_openssl_verifies_the_token_independently(tsa_url, pki, tmp_path):
    needs(shutil.which("openssl") is not None, "openssl")
    token, data = tmp_path / "token.der", tmp_path / "data"
    data.write_bytes(b"checkpoint 7")
    token.write_bytes(stamp(tsa_url, b"checkpoint 7"))
    untrusted = tmp_path / "tsa.pem"
    untrusted.write_bytes(pki.certificate(TSA_SUBJECT).public_bytes(serialization.Encoding.PEM))
    command = ["openssl", "ts", "-verify", "-token_in", "-in", token, "-data", data, "-CAfile", pki.anchor_path]
    result = subprocess.run([*command, "-untrusted", untrusted], capture_output=True, text=True, check=False)
    assert "Verification: OK" in result.stdout, result.stderr


def _crls(pki: DevPki) -> list[x509.CertificateRevocationList]:
    return [x509.load_pem_x509_crl(pki.crl_path.read_bytes())]


def test_the_development_tsa_refuses_to_run_in_production(monkeypatch, pki):
    from hocba.tsa import main

    monkeypatch.setenv("HOCBA_ENVIRONMENT", "production")
    with pytest.raises(SystemExit, match="does not run in production: set HOCBA_TSA_URL"):
        main(["--pki-dir", str(pki.folder)])
