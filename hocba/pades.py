"""A certified copy signed by the school's seal, PAdES baseline B-LT (ETSI EN 319 142-1), and its check (pyHanko).

Signing: the printing command builds the copy's CMS signature with pyHanko, around a signature value the signing
service makes: it sends the DER signed attributes (content type, the SHA-256 of the PDF's signed byte ranges, the
seal's certificate reference) in a `SealCopy` request, and the service signs them with the school's seal, whose key
never leaves it (a PKCS#11 token in development and production). The signature carries an RFC 3161 signature
timestamp from the TSA at HOCBA_TSA_URL, and the file a document security store (DSS) with the seal's and the TSA's
chains and the CRLs that cover them, so a validator (Adobe Reader, `hocba verify`, `pyhanko sign validate`) needs
nothing online but the trust anchor. The signature is an incremental update of the unsigned PDF/A-3 copy, the DSS a
second one, as PDF/A-3 allows.

Checking: `check_copy_signature` validates the signature with pyHanko against the trust anchors and the revocation
information embedded in the file, at the time its timestamp proves, and says in words what passed and what failed: a
byte changed in the page, the attachment or the signature, or anything but validation information appended after
signing, fails.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from typing import Any

from asn1crypto import algos, cms
from asn1crypto import crl as asn1_crl
from asn1crypto import parser as asn1_parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.validation import DocumentSecurityStore, SignatureCoverageLevel, async_validate_pdf_signature
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from shared.contracts.signing import CopySeal
from shared.crypto.certs import from_x5c, identity
from shared.crypto.jws import protected_header
from shared.crypto.timestamps import HttpTimeStamper, asn1_certificate, run_to_end
from shared.errors import Refused

__all__ = [
    "FIELD",
    "CopySealing",
    "HttpTimeStamper",
    "SchoolSealSigner",
    "check_copy_signature",
    "seal_chain",
]

#: The signature field the seal signs in.
FIELD = "SchoolSeal"
#: What the copy's signature says it is for.
REASON = "Bản sao từ hồ sơ lưu trữ (certified copy of the archived record)"
#: Room for a DER ECDSA P-256 signature (at most 72 bytes) while pyHanko sizes the signature.
SIGNATURE_ROOM = 72
#: How a refusal of this module's own is told (not a service's answer).
NOT_SEALED = "not-sealed"

#: Sends the DER signed attributes of one copy to the signing service and returns its answer.
AskSeal = Callable[[bytes], Awaitable[CopySeal]]

# pyHanko warns that revocation information is embedded with fetching off: that is the intent (the PKI's CRLs are
# given), and a command's output is its own sentences.
logging.getLogger("pyhanko.sign.signers.pdf_signer").setLevel(logging.ERROR)


def asn1_crls(crls: Iterable[x509.CertificateRevocationList]) -> list[asn1_crl.CertificateList]:
    return [asn1_crl.CertificateList.load(c.public_bytes(serialization.Encoding.DER)) for c in crls]


def seal_chain(bundle: dict[str, Any]) -> list[x509.Certificate]:
    """The school seal's certificate chain as its signature in the bundle carries it (x5c): the chain a copy's
    signature names first. `Refused` when the bundle holds no seal signature with a chain."""
    for signature in bundle.get("signatures") or []:
        try:
            header = protected_header(signature)
        except (ValueError, AttributeError, IndexError):
            continue
        if header.get("role") == "school_seal" and header.get("x5c"):
            return from_x5c(header["x5c"])
    raise Refused("the bundle holds no school seal signature with its certificate chain", reason=NOT_SEALED)


class ChainChanged(Exception):
    """The signing service signed with another certificate than the one the signed attributes name (the seal's
    certificate was renewed since the record was sealed): sign again naming `chain`."""

    def __init__(self, chain: list[x509.Certificate]) -> None:
        super().__init__("the seal's certificate changed")
        self.chain = chain


class SchoolSealSigner(signers.Signer):
    """A pyHanko signer whose raw signature the signing service makes with the school's seal (`SealCopy`).

    ECDSA P-256 with SHA-256 over the DER signed attributes, as the seal signs; the answer's r‖s is DER-encoded for
    CMS, and checked against the certificate before it is used.
    """

    def __init__(self, chain: Sequence[x509.Certificate], ask: AskSeal) -> None:
        certificates = [asn1_certificate(c) for c in chain]
        super().__init__(
            signing_cert=certificates[0],
            cert_registry=SimpleCertificateStore.from_certs(certificates),
            signature_mechanism=algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            embed_roots=False,
        )
        self.certificate = chain[0]
        self.ask = ask

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        if digest_algorithm != "sha256":
            raise SigningError(f"the school's seal signs with SHA-256, not {digest_algorithm}")
        if dry_run:
            return bytes(SIGNATURE_ROOM)
        reply = await self.ask(data)
        chain = from_x5c(reply.chain)
        if not chain:
            raise Refused("the signing service sent the seal's signature without its certificate", reason=NOT_SEALED)
        if chain[0] != self.certificate:
            raise ChainChanged(chain)
        signature = base64.b64decode(reply.signature)
        if len(signature) != 64:
            raise Refused("the signing service's seal signature is not an ECDSA P-256 r‖s", reason=NOT_SEALED)
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        der = algos.DSASignature({"r": r, "s": s}).dump()
        public = self.certificate.public_key()
        try:
            if not isinstance(public, ec.EllipticCurvePublicKey):
                raise InvalidSignature
            public.verify(der, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise Refused("the seal's signature from the signing service does not verify", reason=NOT_SEALED) from None
        return der


@dataclass
class CopySealing:
    """What sealing a command's copies shares: the timestamp authority, and the trust anchors and CRLs the seal's and
    the TSA's chains are checked against and embedded from (the PKI's: its own CRL and those imported)."""

    timestamper: TimeStamper
    context: ValidationContext

    @classmethod
    def of(
        cls,
        timestamper: TimeStamper,
        anchors: Iterable[x509.Certificate],
        crls: Iterable[x509.CertificateRevocationList],
    ) -> CopySealing:
        context = ValidationContext(
            trust_roots=[asn1_certificate(a) for a in anchors],
            crls=asn1_crls(crls),
            allow_fetching=False,
            revocation_mode="require",
        )
        return cls(timestamper, context)

    async def seal(self, unsigned: bytes, chain: Sequence[x509.Certificate], ask: AskSeal) -> bytes:
        """The copy `unsigned` signed PAdES B-LT by the seal (`chain`: its certificate first); signed again, once,
        naming the seal's current certificate when it was renewed since `chain`. `Refused` saying why when the copy
        cannot be sealed (the TSA down, the chain not valid by the PKI's CRLs); a service's refusal as it came."""
        try:
            try:
                return await self._signed(unsigned, chain, ask)
            except ChainChanged as changed:
                return await self._signed(unsigned, changed.chain, ask)
        except TimestampRequestError as exc:
            raise Refused(f"no signature timestamp: {exc}", reason=NOT_SEALED) from None
        except (SigningError, PdfError) as exc:
            raise Refused(f"the copy cannot be signed: {exc}", reason=NOT_SEALED) from None

    async def _signed(self, unsigned: bytes, chain: Sequence[x509.Certificate], ask: AskSeal) -> bytes:
        meta = PdfSignatureMetadata(
            field_name=FIELD,
            reason=REASON,
            md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES,
            embed_validation_info=True,
            validation_context=self.context,
            use_pades_lta=False,
        )
        writer = IncrementalPdfFileWriter(BytesIO(unsigned))
        pdf_signer = PdfSigner(meta, signer=SchoolSealSigner(chain, ask), timestamper=self.timestamper)
        out = await pdf_signer.async_sign_pdf(writer, output=BytesIO())
        assert isinstance(out, BytesIO)
        return out.getvalue()


# --- checking a copy's signature -----------------------------------------------------------------


@dataclass
class SignatureCheck:
    """What the check of a copy's PAdES signature found: each line passed (True) or failed (False), and the time its
    timestamp proves (None without a valid one)."""

    lines: list[tuple[bool, str]]
    timestamped_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.lines)


def check_copy_signature(data: bytes, anchors: Sequence[x509.Certificate], school_code: str | None) -> SignatureCheck:
    """Validate the copy's PAdES signature with pyHanko: the seal of the record's school (`school_code`), its chain to
    `anchors` and not revoked by the CRLs embedded in the file (nothing fetched), at the time its RFC 3161 timestamp
    proves, over the whole file as signed, with nothing but validation information appended after signing."""
    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)  # what fails is said in the lines, not in log records
    # Called from a coroutine too (a web handler, a test): then checked on a loop of its own, in a thread.
    return run_to_end(_guarded(data, [asn1_certificate(a) for a in anchors], school_code))


async def _guarded(data: bytes, anchors: list[asn1_x509.Certificate], school_code: str | None) -> SignatureCheck:
    """`_check`; a signature whose structures cannot be read (a byte changed in their DER, say) fails, saying so."""
    try:
        return await _check(data, anchors, school_code)
    except (PdfError, ValueError, KeyError, TypeError, IndexError) as exc:
        return SignatureCheck([(False, f"the PDF's signature cannot be read as signed ({exc.__class__.__name__})")])


async def _check(data: bytes, anchors: list[asn1_x509.Certificate], school_code: str | None) -> SignatureCheck:
    lines: list[tuple[bool, str]] = []
    try:
        reader = PdfFileReader(BytesIO(data), strict=False)
        signatures = reader.embedded_signatures
    except (PdfError, ValueError, KeyError, TypeError) as exc:
        return SignatureCheck([(False, f"the PDF's signatures cannot be read ({exc})")])
    if not signatures:
        return SignatureCheck(
            [(False, "the PDF carries no signature: its page could be changed unseen (print the copy again)")]
        )
    if len(signatures) > 1:
        lines.append((False, f"the PDF carries {len(signatures)} signatures; a certified copy carries the seal's only"))
    signature = signatures[0]
    lines.append(_padding_line(signature.sig_object))
    lines.append(_certificates_line(signature.signed_data, anchors))
    lines.append(_signer_line(signature.signer_cert, school_code))
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        lines.append((False, "the PDF holds no validation information (chains and CRLs): it is not PAdES B-LT"))
        return SignatureCheck(lines)
    stamped_at = _timestamp_time(signature.signer_info)
    settings = {"trust_roots": anchors, "allow_fetching": False, "revocation_mode": "require"}
    if stamped_at is not None:
        settings["moment"] = stamped_at
    try:
        context = dss.as_validation_context(settings)
        status = await async_validate_pdf_signature(signature, context, context)
    except (PdfError, ValueError, KeyError, TypeError) as exc:
        lines.append((False, f"the signature cannot be validated ({exc})"))
        return SignatureCheck(lines)
    lines.append(
        (True, "the page, the attached bundle and every other signed byte are as the seal signed them")
        if status.intact and status.valid
        else (False, "the signed bytes were changed after signing (the page, the attachment or the signature)")
    )
    lines.append(
        (True, "the seal's certificate chains to the trust anchor and is not revoked, by the CRLs embedded in the PDF")
        if status.trusted
        else (False, "the seal's certificate does not chain to the trust anchor, or is revoked, by what the PDF embeds")
    )
    lines.append(_timestamp_line(status.timestamp_validity))
    lines.append(_modification_line(status.coverage, status.modification_level, status.docmdp_ok))
    crls, certs = len(dss.crls), len(list(dss.load_certs()))
    lines.append(
        (True, f"the chains and {crls} CRL(s) are embedded ({certs} certificates): PAdES B-LT, checked offline")
        if crls
        else (False, "the PDF embeds no CRL for the seal's chain: it is not PAdES B-LT")
    )
    valid_time = status.timestamp_validity is not None and status.timestamp_validity.valid
    return SignatureCheck(lines, stamped_at if valid_time else None)


def _padding_line(sig_object: Any) -> tuple[bool, str]:
    """The signature's /Contents holds the CMS structure and zeros after it: a byte changed in that space (which no
    digest covers) is a changed copy too."""
    contents = bytes(sig_object["/Contents"])
    try:
        _, _, _, header, content, _ = asn1_parser.parse(contents)
    except ValueError:
        return False, "the signature's contents are not a DER CMS structure"
    if any(contents[len(header) + len(content) :]):
        return False, "the signature's contents were changed after signing (bytes after the CMS structure)"
    return True, "the signature's contents hold the CMS structure and nothing else"


def _certificates_line(signed_data: cms.SignedData, anchors: list[asn1_x509.Certificate]) -> tuple[bool, str]:
    """Each certificate the signature carries is as its issuer signed it (the CMS signature covers none of them): a byte
    changed in one fails here, even when a validator would find the certificate's genuine copy elsewhere."""
    carried = [c.chosen for c in signed_data["certificates"] or [] if c.name == "certificate"]
    try:
        pool = [x509.load_der_x509_certificate(c.dump()) for c in [*carried, *anchors]]
    except ValueError:
        return False, "a certificate the signature carries cannot be read: it was changed after signing"
    by_subject: dict[bytes, list[x509.Certificate]] = {}
    for cert in pool:
        by_subject.setdefault(cert.subject.public_bytes(), []).append(cert)
    for cert in pool[: len(carried)]:
        if not any(_issued_by(cert, issuer) for issuer in by_subject.get(cert.issuer.public_bytes(), [])):
            return False, f"the certificate of {identity(cert).name or 'a signer'} carried in the signature was changed"
    return True, f"the {len(carried)} certificate(s) the signature carries are as their issuers signed them"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _signer_line(cert: asn1_x509.Certificate, school_code: str | None) -> tuple[bool, str]:
    holder = identity(x509.load_der_x509_certificate(cert.dump()))
    if holder.role == "school_seal" and school_code and holder.school_code == school_code:
        return True, f"signed by the seal of {holder.name} ({holder.subject_id}), the record's school"
    return False, f"signed by {holder.describe()}, not by the seal of the record's school ({school_code or 'unknown'})"


def _timestamp_time(signer_info: cms.SignerInfo) -> datetime | None:
    """The time the signature's RFC 3161 timestamp token states (checked with the signature), if it has one."""
    for attribute in signer_info["unsigned_attrs"] or []:
        if attribute["type"].native == "signature_time_stamp_token":
            token = attribute["values"][0]
            info = token["content"]["encap_content_info"]["content"].parsed
            gen_time: datetime = info["gen_time"].native
            return gen_time
    return None


def _timestamp_line(validity: Any) -> tuple[bool, str]:
    if validity is None:
        return False, "the signature carries no RFC 3161 timestamp (PAdES B-T and above carry one)"
    tsa = identity(x509.load_der_x509_certificate(validity.signing_cert.dump())).name
    when = f"{validity.timestamp:%Y-%m-%d %H:%M:%S} UTC"
    if validity.intact and validity.valid and validity.trusted:
        return True, f"timestamped {when} by {tsa} (RFC 3161), its certificate chaining to the trust anchor"
    return False, f"the signature's timestamp ({when}, {tsa}) does not verify or does not chain to the trust anchor"


def _modification_line(
    coverage: SignatureCoverageLevel | None, level: ModificationLevel | None, docmdp_ok: bool | None
) -> tuple[bool, str]:
    whole = coverage == SignatureCoverageLevel.ENTIRE_FILE
    only_validation = coverage == SignatureCoverageLevel.ENTIRE_REVISION and level in (
        ModificationLevel.NONE,
        ModificationLevel.LTA_UPDATES,
    )
    if (whole or only_validation) and docmdp_ok is not False:
        return True, "nothing but validation information was added to the file after it was signed"
    return False, "the file was modified after it was signed: an update appended to it changes what it shows"
