"""Every string and every list a message may carry has a limit, and the limits fit what the domain sends.

Issue 9, reproduction 6: no size limit existed on lists, strings or messages. The walk below fails for
any contract field added without one; documents (`dict[str, Any]`) are bounded by the message's size.
"""

from __future__ import annotations

import importlib
import pkgutil
import types
import typing
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
import pytest
from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

import shared.contracts
from services.grades.domain import assemble_record
from services.grades.rulesets import CIRCULAR_22_2021
from shared.contracts import limits
from shared.contracts.base import Model
from shared.contracts.grades import StudentTermConduct
from shared.contracts.identity import Enrolment, RegisterStudents, StudentIdentity, StudentRegistration
from shared.contracts.signing import RecordsCompleted
from shared.crypto.pki import ARCHIVE_SUBJECT
from shared.crypto.seal import record_claims, seal
from shared.settings import Settings
from tests.unit.grades.builders import enrolled, full_year, snapshot
from tests.unit.signing.trust import make_trust, signed_record

SEQUENCES = (list, tuple, set, frozenset)


def contract_models() -> Iterator[type[BaseModel]]:
    """Every pydantic model defined in a module of `shared.contracts`."""
    for module_info in pkgutil.iter_modules(shared.contracts.__path__):
        module = importlib.import_module(f"{shared.contracts.__name__}.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module.__name__:
                yield value


def has_max_length(metadata: typing.Iterable[Any]) -> bool:
    for item in metadata:
        if isinstance(item, annotated_types.MaxLen):
            return True
        if isinstance(item, FieldInfo) and has_max_length(item.metadata):
            return True
    return False


def unbounded(annotation: Any, metadata: typing.Iterable[Any], path: str) -> list[str]:
    """Where in `annotation` (with the field's `metadata`) a string, list or mapping has no max_length."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        inner, *extra = typing.get_args(annotation)
        return unbounded(inner, [*metadata, *extra], path)
    if origin in (typing.Union, types.UnionType):
        return [p for arm in typing.get_args(annotation) for p in unbounded(arm, metadata, path)]
    if origin is Literal or annotation is Any:
        return []
    if annotation is str:
        return [] if has_max_length(metadata) else [path]
    if origin in SEQUENCES:
        here = [] if has_max_length(metadata) else [path]
        items = [p for arg in typing.get_args(annotation) if arg is not Ellipsis for p in unbounded(arg, [], f"{path}[]")]
        return here + items
    if origin is dict:
        key, value = typing.get_args(annotation)
        if value is Any:
            return []  # a document: bounded by the size of the message
        here = [] if has_max_length(metadata) else [path]
        return here + unbounded(key, [], f"{path}{{key}}") + unbounded(value, [], f"{path}{{value}}")
    return []


def unbounded_fields(model: type[BaseModel]) -> list[str]:
    return [
        place
        for name, info in model.model_fields.items()
        for place in unbounded(info.annotation, info.metadata, f"{model.__module__}.{model.__name__}.{name}")
    ]


def test_every_string_and_list_of_every_contract_has_a_limit():
    models = list(contract_models())
    assert len(models) > 60, "the walk sees every contract"
    assert [place for model in models for place in unbounded_fields(model)] == []


def test_the_walk_finds_a_field_without_a_limit():
    class Unbounded(Model):
        name: str
        named: str = Field(max_length=5)
        tags: list[str] = Field(max_length=3)
        scores: tuple[int, ...] = ()
        maybe: str | None = None
        ratings: dict[str, int] = {}
        document: dict[str, Any] = {}

    assert [place.rsplit(".", 1)[1] for place in unbounded_fields(Unbounded)] == [
        "name",
        "tags[]",
        "scores",
        "maybe",
        "ratings",
        "ratings{key}",
    ]


def registration(**identity: Any) -> dict[str, Any]:
    person = {"personal_id": "079214000123", "full_name": "Nguyễn Văn An", "date_of_birth": "2014-09-05", "sex": "M"}
    enrolment = {"school_code": "79000701", "school_year": "2025-2026", "grade": 6, "class_name": "6A1"}
    return {"identity": {**person, **identity}, "enrolment": enrolment}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("personal_id", "0792140001234"),
        ("full_name", "Nguyễn Văn An " * 10),
        ("guardian_name", "x" * (limits.NAME + 1)),
        ("place_of_birth", "x" * (limits.PLACE + 1)),
    ],
)
def test_a_string_over_its_limit_is_invalid(field, value):
    with pytest.raises(ValidationError) as caught:
        StudentRegistration.model_validate(registration(**{field: value}))
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(("identity", field), "string_too_long")]


def test_a_roster_chunk_over_its_limit_is_invalid():
    rows = [registration()] * (limits.ROWS + 1)
    with pytest.raises(ValidationError) as caught:
        RegisterStudents.model_validate({"students": rows})
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(("students",), "too_long")]
    assert len(RegisterStudents.model_validate({"students": rows[:-1]}).students) == limits.ROWS


def test_the_domain_fits_its_limits():
    identity = StudentIdentity(
        personal_id="079214000123",
        full_name="Công Tôn Nữ Thị Hồng Nhung",
        date_of_birth=date(2014, 9, 5),
        sex="F",
        place_of_birth="Xã Phước Vĩnh An, huyện Củ Chi, Thành phố Hồ Chí Minh",
        ethnicity="Kinh",
        guardian_name="Công Tôn Nữ Thị Hồng Vân",
    )
    enrolment = Enrolment(school_code="79007000", school_year="2025-2026", grade=6, class_name="6A10")
    assert StudentRegistration(identity=identity, enrolment=enrolment).identity == identity


def largest_record(folder: Path):
    """A complete year record with a teacher's comment of the longest allowed on every entry, signed and sealed."""
    comment = ("Em chăm chỉ, tiếp thu bài tốt, cần phát huy tinh thần tự học. " * 10)[: limits.WORDS]
    entries = [entry.model_copy(update={"comment": comment}) for entry in full_year("s1")]
    homeroom = [StudentTermConduct(student_ref="s1", term=t, conduct="Tốt", absences=2, comment=comment) for t in (1, 2)]
    document = assemble_record(CIRCULAR_22_2021, enrolled("s1"), snapshot("s1"), entries, homeroom).document()
    trust = make_trust(folder)
    fields = {k: v for k, v in document.items() if k not in ("record_id", "version", "school_year")}
    signed = signed_record(trust, 1, **fields)
    sealed = seal(trust.signers.signer_for(ARCHIVE_SUBJECT), record_claims(signed.record))  # a service's seal
    return signed.model_copy(update={"record": signed.record.model_copy(update={"seal": sealed})})


def test_a_chunk_of_the_largest_records_fits_the_message_size_limit_with_room(tmp_path):
    settings = Settings()
    chunk = RecordsCompleted(records=[largest_record(tmp_path)] * settings.chunk_size, batch_id="b" * 32)
    size = len(chunk.model_dump_json().encode())
    assert 2_000_000 < size < settings.max_message_bytes / 3


def test_the_broker_refuses_what_the_services_refuse():
    conf = Path(__file__).parents[3] / "deploy" / "rabbitmq" / "rabbitmq.conf"
    lines = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in conf.read_text().splitlines())
        if not key.lstrip().startswith("#") and value
    )
    assert int(lines["max_message_size"]) == Settings().max_message_bytes
