"""How long a string and how many items a list in a message may be: what the domain needs, with room.

A message beyond one of these fails validation, and is dead-lettered at once as invalid (or answered
so); nothing downstream has to guard against a name of a megabyte or a roster of a million rows.
Every `str`, `list` and `tuple` field of a contract, and every string inside one of its lists, names a
limit from here (`tests/unit/shared/test_contracts_limits.py` walks them all). A document
(`dict[str, Any]`: a record, a bundle) is bounded by the size of the whole message instead:
`Settings.max_message_bytes` at the edge, `max_message_size` at the broker.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

# --- strings ---------------------------------------------------------------------------------

#: A school's code in the ministry's database: 8 digits (79007000).
SCHOOL_CODE = 8
#: A school year: "2025-2026".
SCHOOL_YEAR = 9
#: The 12-digit personal ID (Decree 137/2015/NĐ-CP Art. 13).
PERSONAL_ID = 12
#: A person's full name (a student's, a guardian's).
NAME = 100
#: A place of birth as a birth certificate writes it (commune, district, province).
PLACE = 200
#: A short code or label: a class ("6A1"), an ethnicity, a reason code, a kind, a status.
CODE = 50
#: A subject's, a quality's or a competency's name as the circulars write it ("Giải quyết vấn đề và sáng tạo").
SUBJECT = 100
#: An identifier hocba makes: message, record, batch, student reference, key, certificate subject.
ID = 100
#: An identifier made outside hocba (the ministry's receipt), or an outbox key built from ours.
KEY = 200
#: A process's name: its instance name, or `signing-<host name>-<pid>` (a host name has 253 characters at most).
PROCESS = 300
#: A SHA-256 digest or Merkle hash, in hex.
HASH = 64
#: A heading or a reference: what an explanation line is about, the clause or rule it applies.
LABEL = 200
#: What a person writes: a teacher's comment, the reason for a change, a note.
WORDS = 500
#: What a service writes: an error, a rejection's reason, an explanation, an audit finding.
TEXT = 2_000
#: A compact JWS with its signer's certificate chain (`x5c`): a signature, a checkpoint's signature.
JWS = 16_000
#: One certificate, base64 DER (an x5c entry): an EC P-256 leaf is under 1 KB, a CA's RSA-4096 about 2 KB.
CERTIFICATE = 8_000
#: A certified copy's compact JWS, printed as a QR code (which holds at most 2,953 bytes).
QR = 3_000

# --- lists -----------------------------------------------------------------------------------

#: Record versions (or their keys, or their deliveries) in one message: a chunk (`Settings.chunk_size`, 100 by
#: default). Their documents are bounded by the message's size: 100 complete signed records take about 4 MB.
RECORDS = 1_000
#: Rows of a roster chunk, or assessment or conduct entries in one command (the command line sends 1,000 at most).
ROWS = 2_000
#: Student references or personal IDs asked in one request.
LOOKUP = 1_000
#: Students of one school: grades gathers identity's answers for a whole school into one `StudentSnapshots`.
SCHOOL_STUDENTS = 10_000
#: Regular assessments (ĐĐGtx) of one subject in one term (Circular 22/2021 asks for two to four).
REGULAR = 10
#: Subjects one student chooses in grades 10-12: electives (4 of 9), or learning topics (3).
CHOICES = 12
#: Signatures on one record version (three roles sign today).
SIGNATURES = 10
#: Roles of one actor.
ROLES = 10
#: Hashes in an inclusion proof (one a level of a tree of up to 2^64 entries)...
INCLUSION_PROOF = 64
#: ...and in a consistency proof (at most two a level).
CONSISTENCY_PROOF = 128
#: Qualities, or competencies, rated for one student (Circular 27/2020 rates five qualities, ten competencies).
RATINGS = 30
#: Lines of a small fixed set: a record's explanation, outbox counts by kind and status, kinds of difference.
LINES = 1_000
#: Entries an operator's listing may return (access log, parked entries, keys to retry).
LISTING = 10_000
#: Example keys of one reconciliation difference (`Reconcile.limit`).
EXAMPLES = 100_000
#: Findings or passed checks of one archive audit (one a checkpoint, or an entry at fault).
AUDIT = 100_000

# --- strings inside lists, and keys of mappings ----------------------------------------------

Identifier = Annotated[str, Field(max_length=ID)]
PersonalId = Annotated[str, Field(max_length=PERSONAL_ID)]
ShortCode = Annotated[str, Field(max_length=CODE)]
SubjectName = Annotated[str, Field(max_length=SUBJECT)]
OutboxKey = Annotated[str, Field(max_length=KEY)]
HexHash = Annotated[str, Field(max_length=HASH)]
Certificate = Annotated[str, Field(max_length=CERTIFICATE)]
Sentence = Annotated[str, Field(max_length=TEXT)]
