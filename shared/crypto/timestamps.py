"""RFC 3161 timestamps: ask a time-stamping authority (TSA) for a token over some bytes, and verify one.

A token is the TSA's signed statement that a digest (the message imprint) existed at its genTime. It is kept as
the DER of its CMS ContentInfo, the bytes the TSA sent. A token verifies when its signature is intact, the imprint
is the digest of the bytes given, the TSA's certificate carries id-kp-timeStamping and chains to a trust anchor
(the development PKI's root, or in production the anchor configured for the TSA), and that certificate was
valid at genTime and at the moment the verifier asks about (`at`: now, or for a token renewed since, the time
of the renewal that covers it, as RFC 4998 evidence records have it).

The protocol and the checks come from pyHanko (`TimeStamper` builds the request and checks the reply's status and
nonce; `validate_tst_signed_data` checks the CMS signature, the TSA certificate's key usage and its path through
pyhanko-certvalidator); this module only carries the request over HTTP and says what was found in a sentence.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from asn1crypto import cms, tsp
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError, set_tsp_headers
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko_certvalidator import ValidationContext

from shared.crypto.canonical import canonical_json

__all__ = [
    "ACCEPTED_HASHES",
    "DEFAULT_HASH",
    "HttpTimeStamper",
    "STAMPED_FIELDS",
    "checkpoint_bytes",
    "covered",
    "renewal_data",
    "token_algorithm",
    "verify_chain",
    "TimeStampReply",
    "Timestamp",
    "TimestampError",
    "TimestampInvalid",
    "TsaUnavailable",
    "averify_timestamp",
    "digest",
    "read_token",
    "request_timestamp",
    "stamp",
    "verify_timestamp",
]

#: The digest a new token covers, unless asked otherwise (`hocba archive renew --hash` moves to a stronger one).
DEFAULT_HASH = "sha256"
#: The digests a token may use, strongest last: anything else (SHA-1, MD5) is refused when asked for and when read.
ACCEPTED_HASHES = ("sha256", "sha384", "sha512")
TIMESTAMP_QUERY = "application/timestamp-query"
TIMESTAMP_REPLY = "application/timestamp-reply"
_T = TypeVar("_T")

# pyHanko logs each failed check as a warning; the verdict is `TimestampInvalid`'s sentence, not a second line on stderr.
logging.getLogger("pyhanko").addHandler(logging.NullHandler())


class TimestampError(Exception):
    """A timestamp could not be had or does not hold, said in one sentence."""


class TsaUnavailable(TimestampError):
    """The TSA did not answer, or refused: ask again later; nothing is wrong with what was to be stamped."""


class TimestampInvalid(TimestampError):
    """The token is malformed, covers other bytes, or its TSA is not trusted: it proves nothing."""


class TsaUnreachable(TimestampRequestError):
    """No answer from the TSA (what pyHanko's signer is told, as a failed timestamp request)."""

    def __init__(self, url: str, error: Exception) -> None:
        self.error = f"{error or type(error).__name__}"
        super().__init__(f"the timestamp authority at {url} cannot be reached: {self.error}")


class TimeStampReply(tsp.TimeStampResp):
    """A TimeStampResp whose token may be absent, as RFC 3161 §2.4.2 has it (a refusal carries none); asn1crypto's
    own class requires the token, so it can neither write nor read a refusal."""

    _fields = [("status", tsp.PKIStatusInfo), ("time_stamp_token", cms.ContentInfo, {"optional": True})]


@dataclass(frozen=True)
class Timestamp:
    """What a verified token states."""

    gen_time: datetime
    #: The TSA's certificate subject, as a person reads it.
    tsa: str
    serial_number: int
    hash_algorithm: str
    policy: str
    #: The TSA certificate's validity, so a reader sees how long the token stands on its own.
    certificate_not_before: datetime
    certificate_not_after: datetime


def digest(data: bytes, algorithm: str = DEFAULT_HASH) -> bytes:
    """The message imprint of `data` under `algorithm` (one of ACCEPTED_HASHES)."""
    if algorithm not in ACCEPTED_HASHES:
        raise TimestampError(f"{algorithm} is not accepted for timestamps: use one of {', '.join(ACCEPTED_HASHES)}")
    return hashlib.new(algorithm, data).digest()


class HttpTimeStamper(TimeStamper):
    """pyHanko's request/response handling over httpx (RFC 3161 §3.4: a POST of the DER request): also what a pyHanko
    signer takes as its `timestamper` (a PAdES signature's timestamp from the same TSA)."""

    def __init__(self, url: str, timeout: float, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(include_nonce=True)
        self.url = url
        self.timeout = timeout
        #: A connection pool to share (a command printing a class's copies), else one per request.
        self.client = client

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        """The TSA's reply; `TsaUnreachable` when no answer came, `TimestampRequestError` when it was no reply."""
        try:
            if self.client is not None:
                response = await self._posted(self.client, req)
            else:
                async with httpx.AsyncClient() as client:
                    response = await self._posted(client, req)
        except httpx.HTTPError as exc:
            raise TsaUnreachable(self.url, exc) from None
        if response.status_code != 200:
            raise TimestampRequestError(f"the TSA answered HTTP {response.status_code}")
        if response.headers.get("content-type", "").split(";")[0].strip() != TIMESTAMP_REPLY:
            raise TimestampRequestError(f"the TSA did not answer with {TIMESTAMP_REPLY}")
        return TimeStampReply.load(response.content)

    async def _posted(self, client: httpx.AsyncClient, req: tsp.TimeStampReq) -> httpx.Response:
        return await client.post(self.url, content=req.dump(), headers=set_tsp_headers({}), timeout=self.timeout)


async def request_timestamp(url: str, data: bytes, *, algorithm: str = DEFAULT_HASH, timeout: float = 10.0) -> bytes:
    """A token from the TSA at `url` over `data` (its `algorithm` digest): the DER of the TimeStampToken.

    `TsaUnavailable` when the TSA cannot be reached, refuses, or answers with something that is not a token
    over this digest: the caller keeps what it wanted stamped and asks again later.
    """
    imprint = digest(data, algorithm)
    stamper = HttpTimeStamper(url, timeout)
    try:
        token = await stamper.async_timestamp(imprint, algorithm)
        info = token["content"]["encap_content_info"]["content"].parsed
        returned = info["message_imprint"]["hashed_message"].native
    except TsaUnreachable as exc:
        raise TsaUnavailable(f"the TSA at {url} did not answer: {exc.error}") from None
    except OSError as exc:
        raise TsaUnavailable(f"the TSA at {url} did not answer: {exc or type(exc).__name__}") from None
    except TimestampRequestError as exc:
        raise TsaUnavailable(f"the TSA at {url} gave no timestamp: {exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise TsaUnavailable(f"the TSA at {url} answered with something that is not a timestamp: {exc}") from None
    if returned != imprint:
        raise TsaUnavailable(f"the TSA at {url} stamped another digest than the one asked for")
    return bytes(token.dump())


def stamp(url: str, data: bytes, *, algorithm: str = DEFAULT_HASH, timeout: float = 10.0) -> bytes:
    """`request_timestamp` for code that is not async (commands, PDF signing)."""
    return run_to_end(request_timestamp(url, data, algorithm=algorithm, timeout=timeout))


def read_token(token: bytes) -> tuple[cms.SignedData, tsp.TSTInfo]:
    """The token's SignedData and TSTInfo, unverified; `TimestampInvalid` when the bytes are not a token."""
    try:
        info = cms.ContentInfo.load(token)
        if info["content_type"].native != "signed_data":
            raise ValueError("not CMS SignedData")
        signed = info["content"]
        tst_info = signed["encap_content_info"]["content"].parsed
        if not isinstance(tst_info, tsp.TSTInfo):
            raise ValueError("no TSTInfo inside")
        tst_info["gen_time"].native  # noqa: B018 - parses the fields a verifier reads: malformed ones fail here
        tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native  # noqa: B018
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampInvalid(f"not an RFC 3161 timestamp token: {exc}") from None
    return signed, tst_info


def verify_timestamp(
    token: bytes,
    data: bytes,
    anchors: Sequence[x509.Certificate],
    *,
    crls: Sequence[x509.CertificateRevocationList] = (),
    at: datetime | None = None,
) -> Timestamp:
    """Verify `token` over `data` against `anchors`; what it states, or `TimestampInvalid` saying why not.

    The TSA's certificate must have been valid (and not revoked, by `crls`) at genTime and at `at` (default now):
    a token is relied on until a renewal timestamps it, so `at` is that renewal's genTime.
    """
    return run_to_end(averify_timestamp(token, data, anchors, crls=crls, at=at))


async def averify_timestamp(
    token: bytes,
    data: bytes,
    anchors: Sequence[x509.Certificate],
    *,
    crls: Sequence[x509.CertificateRevocationList] = (),
    at: datetime | None = None,
) -> Timestamp:
    """`verify_timestamp` for async code."""
    signed, tst_info = read_token(token)
    algorithm = tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native
    if algorithm not in ACCEPTED_HASHES:
        raise TimestampInvalid(f"the timestamp uses {algorithm}, which is no longer accepted")
    gen_time: datetime = tst_info["gen_time"].native.astimezone(UTC)
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    if not anchors:
        raise TimestampInvalid("no trust anchor for the TSA was given")
    status: dict[str, Any] = {}
    # Revocation must be checked when the CRLs at hand cover the TSA's certificate (the development PKI's cover
    # every certificate it issues); a licensed TSA whose CRL is not among them is checked where found.
    mode = "require" if _crl_covers_signer(signed, crls) else "soft-fail"
    for when in dict.fromkeys([gen_time, moment]):
        context = ValidationContext(
            trust_roots=[asn1_certificate(a) for a in anchors],
            other_certs=[c.chosen for c in signed["certificates"] if c.name == "certificate"],
            crls=[asn1_crl.CertificateList.load(c.public_bytes(serialization.Encoding.DER)) for c in crls],
            moment=when,
            revocation_mode=mode,
            retroactive_revinfo=True,
        )
        try:
            status = await validate_tst_signed_data(signed, context, lambda name: digest(data, name))
        except (SignatureValidationError, ValueError, TypeError, KeyError) as exc:
            raise TimestampInvalid(f"the timestamp's signature does not hold: {exc}") from None
        if not status.get("intact"):
            raise TimestampInvalid("the timestamp covers other bytes than these (its imprint differs)")
        if not status.get("valid"):
            raise TimestampInvalid("the timestamp's signature does not hold")
        if status.get("trust_problem_indic") is not None or status.get("validation_path") is None:
            problem = status.get("trust_problem_indic")
            reason = getattr(problem, "name", "no path to a trust anchor").lower().replace("_", " ")
            raise TimestampInvalid(f"the TSA's certificate is not trusted at {when:%Y-%m-%d %H:%M:%S}Z ({reason})")
    cert: asn1_x509.Certificate = status["signing_cert"]
    validity = cert["tbs_certificate"]["validity"]
    return Timestamp(
        gen_time=gen_time,
        tsa=str(cert.subject.native.get("common_name") or cert.subject.human_friendly),
        serial_number=int(tst_info["serial_number"].native),
        hash_algorithm=algorithm,
        policy=str(tst_info["policy"].native),
        certificate_not_before=validity["not_before"].native.astimezone(UTC),
        certificate_not_after=validity["not_after"].native.astimezone(UTC),
    )


def _crl_covers_signer(signed: cms.SignedData, crls: Sequence[x509.CertificateRevocationList]) -> bool:
    """Whether one of `crls` is issued by the issuer of the token's signing certificate (as the token embeds it)."""
    issuers = {crl.issuer.public_bytes() for crl in crls}
    try:
        sid = signed["signer_infos"][0]["sid"].chosen
        for choice in signed["certificates"] or []:
            cert = choice.chosen
            if (
                choice.name == "certificate"
                and cert.issuer == sid["issuer"]
                and cert.serial_number == sid["serial_number"].native
            ):
                return cert.issuer.dump() in issuers
    except (KeyError, IndexError, ValueError, TypeError):
        return False
    return False


def asn1_certificate(cert: x509.Certificate) -> asn1_x509.Certificate:
    """`cert` as asn1crypto reads it (what pyHanko and its validator take)."""
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def run_to_end(work: Coroutine[Any, Any, _T]) -> _T:
    """Run `work` to its end from code that is not async, in a thread of its own when an event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


# --- a checkpoint's timestamps and their renewals (RFC 4998 evidence records as the model) ---------------------------
#
# The first token over a checkpoint covers its five fields as written (`checkpoint_bytes`). Before that token's TSA
# certificate expires, or its digest weakens, a renewal token is taken over `renewal_data`: the checkpoint's digest
# and the previous token's digest, both under the new token's algorithm, so a renewal to a stronger digest hashes the
# checkpoint again too (RFC 4998 §5.2, hash-tree renewal). A chain t0, t1, … tn then proves the checkpoint existed at
# t0's genTime as long as each token verifies at the genTime of the one after it, and tn verifies now.

#: The fields of a checkpoint a timestamp covers, as written (the same five its signature and its copies carry).
STAMPED_FIELDS = ("origin", "tree_size", "root_hash", "issued_at", "signature")


def checkpoint_bytes(fields: Mapping[str, Any]) -> bytes:
    """What the first timestamp over a checkpoint covers: the RFC 8785 canonical JSON of its five fields as written."""
    return canonical_json({name: fields[name] for name in STAMPED_FIELDS})


def renewal_data(subject: bytes, previous: bytes, algorithm: str) -> bytes:
    """What a renewal token covers: the digest of `subject` (the checkpoint's bytes), then that of the previous token."""
    return digest(subject, algorithm) + digest(previous, algorithm)


def token_algorithm(token: bytes) -> str:
    """The digest algorithm a token's imprint uses (unverified)."""
    _, info = read_token(token)
    return str(info["message_imprint"]["hash_algorithm"]["algorithm"].native)


def covered(subject: bytes, tokens: Sequence[bytes], index: int) -> bytes:
    """The bytes token `index` of a chain covers: the subject for the first, the renewal data for the others."""
    if index == 0:
        return subject
    return renewal_data(subject, tokens[index - 1], token_algorithm(tokens[index]))


def verify_chain(
    subject: bytes,
    tokens: Sequence[bytes],
    anchors: Sequence[x509.Certificate],
    *,
    crls: Sequence[x509.CertificateRevocationList] = (),
    now: datetime | None = None,
) -> list[Timestamp]:
    """Verify a chain of timestamps over `subject`: each token over what it covers, each TSA certificate valid at its
    genTime and at the genTime of the renewal after it (the last: at `now`), genTimes in order. What each states, or
    `TimestampInvalid` naming the token that fails."""
    if not tokens:
        raise TimestampInvalid("no timestamp")
    stated: list[Timestamp] = []
    times = [read_token(t)[1]["gen_time"].native.astimezone(UTC) for t in tokens]
    for index, token in enumerate(tokens):
        at = times[index + 1] if index + 1 < len(tokens) else now
        try:
            stamp_ = verify_timestamp(token, covered(subject, tokens, index), anchors, crls=crls, at=at)
        except TimestampInvalid as exc:
            raise TimestampInvalid(f"{_which(index)}: {exc}") from None
        if stated and stamp_.gen_time < stated[-1].gen_time:
            raise TimestampInvalid(f"{_which(index)} states a time before the timestamp it renews")
        stated.append(stamp_)
    return stated


def _which(index: int) -> str:
    return "the checkpoint's timestamp" if index == 0 else f"renewal {index} of the checkpoint's timestamp"
