"""RFC 8785 canonical JSON and SHA-256 digests of it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

#: RFC 8785 §3.2.2.3: integers beyond ±(2^53 − 1) have no exact I-JSON form.
_SAFE_INTEGER = 2**53 - 1
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False).encode


def _plain(value: Any) -> bool:
    """True when the standard library's JSON output is already the RFC 8785 form of `value`.

    That holds for strings, booleans, null, safe integers, lists and objects whose keys sort the
    same by code point as by UTF-16 code unit (every key inside the Basic Multilingual Plane).
    Floats need ECMAScript number formatting, so they take the slower exact path.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if -_SAFE_INTEGER <= item <= _SAFE_INTEGER:
                continue
            return False
        if kind is dict:
            for key in item:
                if type(key) is not str or (not key.isascii() and max(key) > "\uffff"):
                    return False
            stack.extend(item.values())
            continue
        if kind is list or kind is tuple:
            stack.extend(item)
            continue
        return False
    return True


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 (JCS) serialisation: the exact bytes that are signed and archived.

    Records hold strings and integers only, for which the C JSON encoder with sorted keys and no
    whitespace produces the same bytes as RFC 8785 about ten times faster; anything else (floats,
    keys outside the BMP, huge integers) goes through the `rfc8785` reference implementation.
    """
    if _plain(value):
        try:
            return _dumps(value).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: let the reference implementation refuse it
            pass
    return rfc8785.dumps(value)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of `value`."""
    return sha256_hex(canonical_json(value))
