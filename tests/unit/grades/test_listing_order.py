"""A school's records listed as a school lists its classes and a class its students."""

from __future__ import annotations

from services.grades.domain.listing import class_order, name_order


def test_classes_go_by_grade_then_by_name_with_numbers_as_numbers():
    assert sorted(["10A1", "6A10", "6A2", "6A1", "11B3", "1A"], key=class_order) == [
        "1A", "6A1", "6A2", "6A10", "10A1", "11B3",
    ]


def test_students_go_by_given_name_then_whole_name_without_tone_marks():
    names = ["Võ Văn An", "Đặng Thị Bình", "Dương Minh Châu", "Lê An", "Nguyễn Văn Bình"]
    assert sorted(names, key=name_order) == [
        "Lê An", "Võ Văn An", "Đặng Thị Bình", "Nguyễn Văn Bình", "Dương Minh Châu",
    ]


def test_a_student_the_reader_may_not_see_by_name_goes_first():
    assert sorted(["Lê An", ""], key=name_order) == ["", "Lê An"]
