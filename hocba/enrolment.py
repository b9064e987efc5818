"""Enrolling a school's staff from a staff table: the staff register, and the certificates of those who sign.

One path serves a school's CSV file (`hocba pki enrol staff.csv`) and the demo's generated table
(`hocba.staff.demo_staff_table`): each row is checked on its own, a bad row is told by its number and
reason and the others go on, and enrolling the same table again changes nothing and issues nothing.

Who gets a certificate: each homeroom teacher and principal (signing under their own name, which the
certificate's subject carries), each school's seal, and the services' own (svc-grades, archive). Subject
teachers and records administrators are enrolled for their actor tokens only: they sign no record.
A certificate that no longer serves (revoked, expired) is issued again with a new key; a certificate
imported from a licensed CA is never replaced by a development one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from hocba.commands import Row
from hocba.staff import (
    SCHOOL_NAME,
    STAFF_ROLES,
    StaffMember,
    StaffRegister,
    StaffRole,
    seal_holder,
)
from shared.crypto.pkcs11 import TokenConfig
from shared.crypto.pki import DevPki, Holder, service_holders
from shared.provinces import PROVINCES

#: The columns a staff table must have; `classes`, `school_name` and `subjects` may be left out.
COLUMNS = ("school_code", "staff_id", "name", "role")
#: X.520's upper bound on a common name: the certificate's subject carries the name.
NAME_LIMIT = 64
#: A staff id is a file name in the PKI and a key label in a token: letters, digits, `.`, `_`, `-`.
STAFF_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CLASS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,19}")
#: Subject ids the system gives itself: schools' seals, services, the archive, operators.
RESERVED = ("seal-", "svc-", "operator-")
#: Words a school may use for a role, and the role's name in hocba.
ROLE_HINTS = {"teacher": "subject_teacher", "records_admin": "school_admin", "admin": "school_admin"}


class RowProblem(ValueError):
    """Why a row of the staff table is not enrolled, in words the school can act on."""


def school_code_problem(code: str) -> str | None:
    """Why `code` is not a ministry school code (8 digits, the first two a province's code), if it is not."""
    if not (len(code) == 8 and code.isascii() and code.isdigit()):
        return f"school_code '{code}' is not a school code: expected the ministry's 8 digits, e.g. 79007000"
    if f"0{code[:2]}" not in PROVINCES:
        return (
            f"school_code {code} starts with {code[:2]}, which is no province's code: the first two digits are the "
            "province's (79 for Ho Chi Minh City)"
        )
    return None


def _text(values: Mapping[str, str], column: str) -> str:
    return unicodedata.normalize("NFC", values.get(column, "").strip())


def _name(value: str, column: str) -> str:
    if not value:
        raise RowProblem(f"{column} is empty: the certificate and the records name the signer by it")
    if len(value) > NAME_LIMIT:
        raise RowProblem(f"{column} has {len(value)} characters: at most {NAME_LIMIT} fit a certificate's subject")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise RowProblem(f"{column} holds a control character (a line break or a tab?): write the name on one line")
    return value


def _staff_id(value: str) -> str:
    if not value:
        raise RowProblem("staff_id is empty: each person needs the id the school management system knows them by")
    if not STAFF_ID.fullmatch(value):
        raise RowProblem(
            f"staff_id '{value}' is not an id: expected up to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if value.startswith(RESERVED) or value == "archive":
        raise RowProblem(
            f"staff_id '{value}' is one hocba gives itself (seal-, svc-, operator-, archive): choose another"
        )
    return value


def _role(value: str) -> StaffRole:
    for role in STAFF_ROLES:
        if value == role:
            return role
    hint = f" (for '{value}', write {ROLE_HINTS[value]})" if value in ROLE_HINTS else ""
    raise RowProblem(f"role '{value}' is not one of {', '.join(STAFF_ROLES)}{hint}")


def _classes(value: str, role: StaffRole) -> tuple[str, ...]:
    classes = tuple(dict.fromkeys(c for c in re.split(r"[\s,;]+", value) if c))
    if bad := [c for c in classes if not CLASS.fullmatch(c)]:
        raise RowProblem(f"classes: '{bad[0]}' is not a class name such as 6A1 (letters, digits, '.', '_' or '-')")
    if role == "homeroom_teacher" and len(classes) != 1:
        found = f"found {len(classes)}: {' '.join(classes)}" if classes else "the column is empty"
        raise RowProblem(f"a homeroom teacher has exactly one class in classes ({found})")
    if role == "subject_teacher" and not classes:
        raise RowProblem("a subject teacher names the classes they teach in classes, e.g. 6A1 6A2")
    if role in ("principal", "school_admin") and classes:
        raise RowProblem(f"a {role} has no classes: leave classes empty (found {' '.join(classes)})")
    return classes


def member_of(values: Mapping[str, str]) -> StaffMember:
    """The staff member a row of the staff table names; `RowProblem` says why the row names none."""
    code = _text(values, "school_code")
    if problem := school_code_problem(code):
        raise RowProblem(problem)
    role = _role(_text(values, "role"))
    subjects = tuple(dict.fromkeys(s.strip() for s in _text(values, "subjects").split(";") if s.strip()))
    if subjects and role != "subject_teacher":
        raise RowProblem(f"only a subject teacher has subjects (this row's role is {role})")
    return StaffMember(
        staff_id=_staff_id(_text(values, "staff_id")),
        name=_name(_text(values, "name"), "name"),
        role=role,
        school_code=code,
        classes=_classes(_text(values, "classes"), role),
        subjects=subjects,
    )


def table_rows(table: Iterable[Mapping[str, str]]) -> list[Row]:
    """A staff table given as rows of values, numbered as a CSV file's rows are (the header is row 1)."""
    return [Row(number, dict(values)) for number, values in enumerate(table, start=2)]


@dataclass
class Enrolment:
    """What one enrolment did: staff enrolled, updated (classes, subjects), unchanged; certificates issued; each
    rejected row's reason by row number; and what the school should know of the certificates kept."""

    enrolled: int = 0
    updated: int = 0
    unchanged: int = 0
    certificates: int = 0
    #: Subject ids whose certificate no longer served and was issued again.
    renewed: list[str] = field(default_factory=list)
    bad: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "enrolled": self.enrolled,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "certificates issued": self.certificates,
        }


class Certificates:
    """What the PKI holds for each subject now: whether its certificate still serves, and whether this PKI issued it
    (a development certificate) or a licensed CA did.

    A certificate no longer serves when it has expired or its CA's CRL lists it. A CRL past its nextUpdate is not
    the certificates' fault: the CRL is renewed (`hocba pki crl`), not every certificate under it.
    """

    def __init__(self, pki: DevPki) -> None:
        self.pki = pki
        self.trust = pki.trust_store() if pki.exists() else None
        self.now = datetime.now(UTC)
        self._problems: dict[str, str | None] = {}

    def present(self, subject_id: str) -> bool:
        return self.trust is not None and self.pki.cert_path(subject_id).exists()

    def problem(self, subject_id: str) -> str | None:
        """Why the subject's certificate no longer serves; None when it does or there is none."""
        if subject_id not in self._problems:
            self._problems[subject_id] = self._problem(subject_id) if self.present(subject_id) else None
        return self._problems[subject_id]

    def _problem(self, subject_id: str) -> str | None:
        assert self.trust is not None
        chain = self.pki.chain(subject_id)
        certificate = chain[0]
        if not certificate.not_valid_before_utc <= self.now <= certificate.not_valid_after_utc:
            begins, ends = certificate.not_valid_before_utc, certificate.not_valid_after_utc
            return f"it is valid from {begins:%Y-%m-%d} to {ends:%Y-%m-%d}"
        issuer = next((c for c in [*chain[1:], *self.trust.anchors] if _issued(certificate, c)), None)
        if issuer is None:
            return f"its issuer '{certificate.issuer.rfc4514_string()}' is not among the PKI's trust anchors"
        crl = self.trust.crl_for(issuer)
        entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number) if crl is not None else None
        return f"it was revoked on {entry.revocation_date_utc:%Y-%m-%d}" if entry is not None else None

    def serves(self, subject_id: str) -> bool:
        return self.present(subject_id) and self.problem(subject_id) is None

    def issued_here(self, subject_id: str) -> bool:
        return self.present(subject_id) and self.pki.issued_here(self.pki.certificate(subject_id))

    def renewable(self, subject_id: str) -> bool:
        """A development certificate that no longer serves: it is issued again."""
        return self.problem(subject_id) is not None and self.issued_here(subject_id)


def _issued(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    if certificate.issuer != issuer.subject:
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _post(member: StaffMember) -> tuple[str, ...] | None:
    """The post only one person holds at a time: a school's principal, a class's homeroom teacher."""
    if member.role == "principal":
        return (member.school_code, "principal")
    if member.role == "homeroom_teacher":
        return (member.school_code, "homeroom_teacher", member.classes[0])
    return None


def _describe(post: tuple[str, ...]) -> str:
    return f"the principal of school {post[0]}" if len(post) == 2 else f"the homeroom teacher of {post[2]} at {post[0]}"


class _Plan:
    """The rows of a staff table, checked each on its own, then against each other and against the register."""

    def __init__(self, register: StaffRegister, certificates: Certificates) -> None:
        self.register = register
        self.certificates = certificates
        self.outcome = Enrolment()
        #: The rows accepted so far, by staff id, in the table's order; and each one's row number and school name.
        self.accepted: dict[str, StaffMember] = {}
        self.rows: dict[str, int] = {}
        self.named: dict[str, str] = {}
        #: Staff ids of the register whose post a row takes over (their certificate no longer serves).
        self.replaced: set[str] = set()

    def add(self, row: Row) -> None:
        """Accept a row that is right on its own and beside the rows before it (its post is settled after)."""
        if problem := getattr(row, "problem", ""):  # the line itself is wrong (more values than columns, say)
            raise RowProblem(problem)
        member = member_of(row.values)
        self._check_person(member)
        school_name = _text(row.values, "school_name")
        if school_name:
            _name(school_name, "school_name")
            self._check_school(member.school_code, school_name)
        self.rows[member.staff_id] = row.number
        self.accepted[member.staff_id] = member
        self.named[member.staff_id] = school_name

    def _check_person(self, member: StaffMember) -> None:
        staff_id = member.staff_id
        if staff_id in self.rows:
            raise RowProblem(f"staff_id {staff_id} is in row {self.rows[staff_id]} already: one row a person")
        enrolled = self.register.staff.get(staff_id)
        if enrolled is None:
            return
        if enrolled.school_code != member.school_code:
            raise RowProblem(
                f"staff_id {staff_id} is enrolled at school {enrolled.school_code}: a staff id names one person "
                "across the city; give this person their own id"
            )
        changed = (enrolled.name, enrolled.role) != (member.name, member.role)
        if not (changed and self.certificates.serves(staff_id)):
            return
        revoke = (
            f"revoke it first (`hocba pki revoke {staff_id} --reason superseded`)"
            if self.certificates.issued_here(staff_id)
            else "have its CA revoke it and import the CA's new CRL (`hocba pki import-crl`) first"
        )
        raise RowProblem(
            f"{staff_id} holds a certificate as '{enrolled.name}', {enrolled.role}: {revoke}, then enrol them as "
            f"'{member.name}', {member.role}"
        )

    def _check_school(self, code: str, name: str) -> None:
        known = self.school_name(code, default="")
        if known and name != known:
            raise RowProblem(
                f"school {code} is enrolled as '{known}' (its seal's certificate names it so), not '{name}': "
                "leave school_name empty or write it the same"
            )

    def reject(self, staff_id: str, reason: str) -> None:
        self.outcome.bad[self.rows[staff_id]] = reason
        del self.accepted[staff_id]

    def settle_posts(self) -> None:
        """Refuse each row whose post (a school's principal, a class's homeroom teacher) an earlier row takes, or
        someone of the register keeps, until none is; the register's holders whose post a row takes leave it."""
        while True:
            taken: dict[tuple[str, ...], StaffMember] = {}
            refused = []
            for member in self.accepted.values():
                post = _post(member)
                if post is None:
                    continue
                if problem := self._post_problem(member, post, taken):
                    refused.append((member.staff_id, problem))
                else:
                    taken[post] = member
            for staff_id, problem in refused:
                self.reject(staff_id, problem)
            if not refused:
                break
        self.replaced = {
            m.staff_id for m in self.register.staff.values() if m.staff_id not in self.accepted and _post(m) in taken
        }

    def _post_problem(self, member: StaffMember, post: tuple[str, ...], taken: dict) -> str | None:
        if post in taken:
            other = taken[post].staff_id
            return f"{_describe(post)} is {other} in row {self.rows[other]} already"
        holder = next(
            (m for m in self.register.staff.values() if _post(m) == post and m.staff_id not in self.accepted), None
        )
        if holder is None or holder.staff_id == member.staff_id or not self.certificates.serves(holder.staff_id):
            return None
        return (
            f"{_describe(post)} is {holder.staff_id} ('{holder.name}'), enrolled with a certificate that serves: list "
            f"them in the same table with their new post, or, if they left, revoke their certificate "
            f"(`hocba pki revoke {holder.staff_id} --reason affiliation_changed`) first"
        )

    @property
    def schools(self) -> list[str]:
        return list(dict.fromkeys(m.school_code for m in self.accepted.values()))

    def school_name(self, code: str, default: str | None = None) -> str:
        """The school's name: as the first row of it names it, else as enrolled, else `Trường <code>`."""
        given = next((self.named[i] for i, m in self.accepted.items() if m.school_code == code and self.named[i]), "")
        fallback = SCHOOL_NAME.format(code=code) if default is None else default
        return given or self.register.schools.get(code) or fallback

    def holders(self) -> list[Holder]:
        """Who gets a certificate: the accepted rows' signers, their schools' seals, the services."""
        signers = [m.holder(self.school_name(m.school_code)) for m in self.accepted.values() if m.signs]
        seals = [seal_holder(code, self.school_name(code)) for code in self.schools]
        return [*signers, *seals, *service_holders()]

    def apply(self) -> None:
        """Count what changed and keep it in the register (written only when something did)."""
        register, outcome = self.register, self.outcome
        changed = bool(self.replaced)
        for staff_id in self.replaced:
            del register.staff[staff_id]
        for staff_id, member in self.accepted.items():
            before = register.staff.get(staff_id)
            if before is None:
                outcome.enrolled += 1
            elif before == member:
                outcome.unchanged += 1
            else:
                outcome.updated += 1
            changed = changed or before != member
            register.staff[staff_id] = member
        for code in self.schools:
            changed = changed or code not in register.schools
            register.schools.setdefault(code, self.school_name(code))
        if changed:
            register.save()


def enrol_rows(pki: DevPki, rows: Iterable[Row], token: TokenConfig | None = None) -> Enrolment:
    """Enrol the staff of a staff table: every good row into the register, certificates for those who sign and for
    the schools' seals (issued once; issued again only when they no longer serve), the services' own if missing.

    With `token`, new keys go into that PKCS#11 token (as `DevPki.create`); otherwise where the PKI keeps its keys.
    """
    plan = _Plan(StaffRegister.load(pki.folder), Certificates(pki))
    for row in rows:
        try:
            plan.add(row)
        except RowProblem as exc:
            plan.outcome.bad[row.number] = str(exc)
    plan.settle_posts()
    holders = plan.holders()
    renew = [h.subject_id for h in holders if plan.certificates.renewable(h.subject_id)]
    plan.outcome.certificates = pki.create(holders, token, renew=renew)
    plan.outcome.renewed = renew
    plan.outcome.notes = [
        f"{h.subject_id}'s certificate from a licensed CA no longer serves ({plan.certificates.problem(h.subject_id)}): "
        "import a current one with `hocba pki import-cert`"
        for h in holders
        if plan.certificates.problem(h.subject_id) is not None and h.subject_id not in renew
    ]
    plan.apply()
    return plan.outcome
