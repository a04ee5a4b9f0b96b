"""Hypothesis strategies that build any request message of a contract from its
descriptor: the values an attacker or a buggy client would send.

Strings mix plausible ids with NUL and other control characters, odd and huge
unicode and forged page tokens; integers reach both int64 extremes; enums take
unknown numbers; timestamps run past both ends of what protobuf allows. The
well-formed values are there too, so a request also gets past validation and
exercises the rules, the database and the provider behind it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

FUZZ_USER = "fuzz-user"
_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)
_UINT32 = (0, 2**32 - 1)


def _forged_token() -> st.SearchStrategy[str]:
    documents = st.sampled_from(
        [
            {"v": 1, "p": {"i": "Infinity"}, "q": "0"},
            {"v": 2, "p": {"c": "2026-01-01T00:00:00", "i": 2**64}, "q": "x"},
            {"v": 1, "p": {"u": 1e309, "i": -1}, "q": ""},
            [],
            "garbage",
        ]
    )
    return documents.map(
        lambda doc: base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    ) | st.sampled_from(["x", ".", "a.b", "=" * 8, "\x00", "%00", "e30.AAAA"])


_NASTY = st.sampled_from(
    [
        "\x00",
        "x\x00",
        "bob\x00",
        "\x07\x1b[31m",
        "\u202e",
        "\ufeff",
        "\U0010ffff",
        "a\nb",
        "a\rb",
        "\t",
        " ",
        "é" * 300,
        "🍰" * 50,
        "x" * 257,
        "y" * 40_000,
    ]
)
_PLAUSIBLE = st.sampled_from(
    [
        "",
        FUZZ_USER,
        "other-user",
        "gpt-image-2.5-sunburst",
        "gpt-image-1",
        "dall-e-3",
        "1024x1024",
        "1536x1024",
        "UTC",
        "America/New_York",
        "Mars/Olympus",
        "exact",
        "similar",
        "Tomato soup",
        "2 cups flour",
        "0" * 64,
    ]
)


def strings(field: FieldDescriptor) -> st.SearchStrategy[str]:
    base = _PLAUSIBLE | _NASTY | st.text(max_size=40)
    if field.name.endswith("page_token"):
        return _forged_token() | base
    return base


def integers(field: FieldDescriptor) -> st.SearchStrategy[int]:
    low, high = {
        FieldDescriptor.TYPE_INT64: _INT64,
        FieldDescriptor.TYPE_SINT64: _INT64,
        FieldDescriptor.TYPE_SFIXED64: _INT64,
        FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
        FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
        FieldDescriptor.TYPE_UINT32: _UINT32,
        FieldDescriptor.TYPE_FIXED32: _UINT32,
    }.get(field.type, _INT32)
    edges = [v for v in (low, high, -1, 0, 1, 2**31, 2**62, 10**12, 10**12 + 1) if low <= v <= high]
    return st.sampled_from(edges) | st.integers(
        min_value=max(low, -(10**7)), max_value=min(high, 10**7)
    )


def enums(field: FieldDescriptor) -> st.SearchStrategy[int]:
    known = sorted(field.enum_type.values_by_number)
    return st.sampled_from(known) | st.sampled_from([-1, 999, 2**31 - 1])


def timestamps() -> st.SearchStrategy[dict[str, int]]:
    seconds = st.sampled_from(
        [-62135596800, -1, 0, 1_700_000_000, 1_780_000_000, 253402300799, 10**12]
    ) | st.integers(min_value=1_600_000_000, max_value=1_900_000_000)
    nanos = st.sampled_from([0, 999_999_999, -1, 10**9]) | st.integers(0, 999_999_999)
    return st.fixed_dictionaries({"seconds": seconds, "nanos": nanos})


def _field_value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return strings(field)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32) | st.sampled_from(
            [0.0, 0.5, 1.0, 1.5, -0.1]
        )
    if kind == FieldDescriptor.TYPE_ENUM:
        return enums(field)
    if kind == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return timestamps()
        if depth >= 3:
            return None
        return messages(field.message_type, depth + 1).map(_as_dict)
    return integers(field)


def _as_dict(message: Message) -> dict[str, Any]:
    return {"__message__": message}


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of this type: each field set or left unset."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _field_value(field, depth)
        if value is None:
            continue
        if field.is_repeated:
            value = st.lists(value, max_size=3) | st.lists(value, min_size=101, max_size=102)
        fields[field.name] = value
    optional = st.fixed_dictionaries({}, optional=fields)
    return optional.map(lambda values: _build(descriptor, values))


def _build(descriptor: Descriptor, values: dict[str, Any]) -> Message:
    from google.protobuf import message_factory

    message = message_factory.GetMessageClass(descriptor)()
    for name, value in values.items():
        _assign(message, descriptor.fields_by_name[name], value)
    return message


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    if field.is_repeated:
        container = getattr(message, field.name)
        for item in value:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                container.add().CopyFrom(_message_of(field, item))
            else:
                container.append(item)
        return
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(message, field.name).CopyFrom(_message_of(field, value))
        return
    setattr(message, field.name, value)


def _message_of(field: FieldDescriptor, value: Any) -> Message:
    if isinstance(value, dict) and "__message__" in value:
        result: Message = value["__message__"]
        return result
    from google.protobuf import message_factory

    assert field.message_type is not None
    stamp = message_factory.GetMessageClass(field.message_type)()
    for key, number in value.items():
        setattr(stamp, key, number)
    return stamp
