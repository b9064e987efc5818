"""The development time-stamping authority: RFC 3161 over HTTP, signed with the development PKI's `tsa` certificate.

`hocba up` (and the test stacks) run it beside the services and point HOCBA_TSA_URL at it; production points
HOCBA_TSA_URL at a licensed TSA instead, and this process refuses to start there. The protocol is RFC 3161 §3.4:
a POST of a DER TimeStampReq as `application/timestamp-query`, answered by a DER TimeStampResp as
`application/timestamp-reply` (HTTP 200 even when the request is refused: the refusal is in the reply's status).

The token is CMS SignedData over a TSTInfo (asn1crypto), signed ECDSA with the TSA's key; its signed attributes
name the certificate (ESS signing-certificate-v2, RFC 5816). The certificate is embedded when the request asks for
it (certReq). A request for a digest other than SHA-256/384/512, for a policy other than this TSA's, with
extensions, or whose imprint is the wrong length is refused with the matching failure bit.

    python -m hocba.tsa --port 9181            # key and certificate from the PKI at HOCBA_PKI_DIR
"""

from __future__ import annotations

import argparse
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pyhanko.sign.general import as_signing_certificate_v2, simple_cms_attribute
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.crypto.pki import TSA_SUBJECT, DevPki, PkiRefused
from shared.crypto.timestamps import ACCEPTED_HASHES, TIMESTAMP_QUERY, TIMESTAMP_REPLY, TimeStampReply
from shared.settings import DEFAULT_HTTP_PORTS, Misconfigured, Settings

log = logging.getLogger("hocba.tsa")

#: This TSA's policy (TSTInfo.policy): an OID under 2.25 (ITU-T X.667, from a UUID), needing no registration.
POLICY = "2.25.178206524785219318591004508458553011543"
#: How close genTime is to the time the request was answered: the clock of this machine, to the second.
ACCURACY_SECONDS = 1
#: The largest request read: a TimeStampReq for SHA-512 with a nonce is about a hundred bytes.
MAX_REQUEST_BYTES = 4096
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


class Refused(Exception):
    """A request this TSA will not stamp: the RFC 3161 failure bit and a sentence for the reply's statusString."""

    def __init__(self, fail_info: str, text: str) -> None:
        super().__init__(text)
        self.fail_info = fail_info


@dataclass
class TimeStampAuthority:
    """Answers TimeStampReq bytes with TimeStampResp bytes; `clock` is injected so tests state genTime."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    policy: str = POLICY

    def __post_init__(self) -> None:
        self._cert = asn1_x509.Certificate.load(self.certificate.public_bytes(serialization.Encoding.DER))
        self._serials = threading.Lock()
        self._last_serial = 0

    def answer(self, body: bytes) -> bytes:
        """The DER TimeStampResp for the DER TimeStampReq `body`: a token, or a refusal saying why."""
        try:
            request = self._parse(body)
            token = self._token(request)
        except Refused as refused:
            log.info("timestamp request refused: %s", refused)
            status = {"status": "rejection", "status_string": [str(refused)], "fail_info": {refused.fail_info}}
            return TimeStampReply({"status": tsp.PKIStatusInfo(status)}).dump()
        return tsp.TimeStampResp({"status": tsp.PKIStatusInfo({"status": "granted"}), "time_stamp_token": token}).dump()

    def _parse(self, body: bytes) -> tsp.TimeStampReq:
        try:
            request = tsp.TimeStampReq.load(body, strict=True)
            version = request["version"].native
            algorithm = request["message_imprint"]["hash_algorithm"]["algorithm"].native
            imprint = request["message_imprint"]["hashed_message"].native
            policy = request["req_policy"].native
            extensions = request["extensions"].native
        except (ValueError, TypeError, KeyError) as exc:
            raise Refused("bad_data_format", f"not a DER TimeStampReq: {exc}") from None
        if version != "v1":
            raise Refused("bad_request", f"version {version} is not 1")
        if algorithm not in ACCEPTED_HASHES:
            raise Refused("bad_alg", f"{algorithm} is not accepted: use one of {', '.join(ACCEPTED_HASHES)}")
        if len(imprint) != _HASHES[algorithm].digest_size:
            raise Refused("bad_data_format", f"the imprint is {len(imprint)} bytes, not a {algorithm} digest")
        if policy is not None and policy != self.policy:
            raise Refused("unaccepted_policy", f"policy {policy} is not this TSA's ({self.policy})")
        if extensions:
            raise Refused("unaccepted_extension", "this TSA accepts no request extensions")
        return request

    def _serial(self) -> int:
        """A serial number unique to this TSA (RFC 3161 §2.4.2): random, 127 bits, never the same twice here."""
        with self._serials:
            serial = secrets.randbits(127) | 1 << 126
            while serial == self._last_serial:
                serial = secrets.randbits(127) | 1 << 126
            self._last_serial = serial
            return serial

    def _token(self, request: tsp.TimeStampReq) -> cms.ContentInfo:
        algorithm = request["message_imprint"]["hash_algorithm"]["algorithm"].native
        now = self.clock().astimezone(UTC)
        info = {
            "version": "v1",
            "policy": self.policy,
            "message_imprint": request["message_imprint"],
            "serial_number": self._serial(),
            "gen_time": now,
            "accuracy": {"seconds": ACCURACY_SECONDS},
            "tsa": asn1_x509.GeneralName(name="directory_name", value=self._cert.subject),
        }
        if request["nonce"].native is not None:
            info["nonce"] = request["nonce"]
        content = tsp.TSTInfo(info).dump()
        digest = hashes.Hash(_HASHES[algorithm])
        digest.update(content)
        signed_attrs = cms.CMSAttributes(
            [
                simple_cms_attribute("content_type", "tst_info"),
                simple_cms_attribute("signing_time", cms.Time({"utc_time": core.UTCTime(now)})),
                simple_cms_attribute("signing_certificate_v2", as_signing_certificate_v2(self._cert, algorithm)),
                simple_cms_attribute("message_digest", digest.finalize()),
            ]
        )
        signature = self.key.sign(signed_attrs.dump(), ec.ECDSA(_HASHES[algorithm]))
        digest_algorithm = algos.DigestAlgorithm({"algorithm": algorithm})
        signer = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    {
                        "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                            {"issuer": self._cert.issuer, "serial_number": self._cert.serial_number}
                        )
                    }
                ),
                "digest_algorithm": digest_algorithm,
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": f"{algorithm}_ecdsa"}),
                "signed_attrs": signed_attrs,
                "signature": signature,
            }
        )
        signed = {
            "version": "v3",
            "digest_algorithms": [digest_algorithm],
            "encap_content_info": {"content_type": "tst_info", "content": cms.ParsableOctetString(content)},
            "signer_infos": [signer],
        }
        if request["cert_req"].native:
            signed["certificates"] = [self._cert]
        return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed)})


def create_app(authority: TimeStampAuthority) -> Starlette:
    """The TSA over HTTP: POST / (RFC 3161 §3.4), /health/live, /health/ready and /metrics."""
    registry = CollectorRegistry()
    answered = Counter(
        "hocba_tsa_requests_total", "Timestamp requests answered, by outcome", ["outcome"], registry=registry
    )

    async def stamp(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != TIMESTAMP_QUERY:
            answered.labels("bad_request").inc()
            return JSONResponse({"error": f"send a DER TimeStampReq as {TIMESTAMP_QUERY}"}, status_code=415)
        body = await request.body()
        if len(body) > MAX_REQUEST_BYTES:
            answered.labels("bad_request").inc()
            return JSONResponse({"error": "the request is too large for a TimeStampReq"}, status_code=413)
        reply = authority.answer(body)
        granted = TimeStampReply.load(reply)["status"]["status"].native == "granted"
        answered.labels("granted" if granted else "refused").inc()
        return Response(reply, media_type=TIMESTAMP_REPLY)

    async def health(_: Request) -> Response:
        return JSONResponse({"live": True, "ready": True})

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/", stamp, methods=["POST"]),
            Route("/health/live", health),
            Route("/health/ready", health),
            Route("/metrics", metrics),
        ]
    )


def from_pki(pki: DevPki) -> TimeStampAuthority:
    """The TSA holding the PKI's `tsa` certificate and key."""
    key = serialization.load_pem_private_key(pki.key_path(TSA_SUBJECT).read_bytes(), pki.passphrase)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiRefused(f"the TSA's key in {pki.folder} is not an EC key")
    return TimeStampAuthority(pki.certificate(TSA_SUBJECT), key)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hocba.tsa", description="The development RFC 3161 time-stamping authority (not for production)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_HTTP_PORTS["tsa"])
    parser.add_argument("--pki-dir", type=Path, default=None, help="the development PKI; default HOCBA_PKI_DIR")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s tsa %(levelname)s %(message)s")
    settings = Settings()
    try:
        if settings.production:
            raise Misconfigured(
                "the development TSA does not run in production: set HOCBA_TSA_URL to a licensed RFC 3161 TSA"
            )
        pki = DevPki.configured(settings, args.pki_dir)
        if not pki.cert_path(TSA_SUBJECT).exists():
            raise PkiRefused(f"no TSA certificate in the PKI at {pki.folder}: run `hocba pki init`")
        authority = from_pki(pki)
    except Misconfigured as exc:
        raise SystemExit(f"tsa: {exc}") from None
    log.info("development TSA on %s:%d (%s)", args.host, args.port, authority.certificate.subject.rfc4514_string())
    uvicorn.run(create_app(authority), host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
