"""Bounds every request must keep, checked once at the edge for every RPC.

Each kind of input has one rule here, applied by walking the request message,
so no RPC can forget one and no bad value reaches a rule, a database or a
provider:

- strings: no control characters (PostgreSQL text refuses NUL; the rest only
  hides what a value really is); identifiers allow no whitespace controls at
  all, free text allows tab and newlines; at most MAX_TEXT_CHARS (fields have
  tighter limits in their own service's validation);
- integers: money (`*_micros`) at most MAX_MONEY_MICROS, far
  above any image price and far below int64 overflow of any sum the services
  keep; other counts at most MAX_COUNT;
- doubles: finite;
- Timestamps: inside services.common.timestamps' supported range.
"""

from __future__ import annotations

import math
import unicodedata
from typing import cast

from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.common import timestamps
from services.common.errors import Violations

MAX_MONEY_MICROS = 1_000_000_000_000  # one million USD
MAX_COUNT = 1_000_000_000_000
MAX_TEXT_CHARS = 32_000
MAX_IDENTIFIER_CHARS = 256
_IDENTIFIER_SUFFIXES = ("_id", "_key", "_token", "_zone")
_IDENTIFIER_NAMES = frozenset({"model", "size", "provider", "cache_hit", "sha256"})
_TEXT_CONTROLS = frozenset("\t\n\r")
_TIMESTAMP = "google.protobuf.Timestamp"


def is_identifier(name: str) -> bool:
    return name in _IDENTIFIER_NAMES or name.endswith(_IDENTIFIER_SUFFIXES)


def string_problem(value: str, *, identifier: bool) -> str | None:
    """Why a string is refused, or None."""
    limit = MAX_IDENTIFIER_CHARS if identifier else MAX_TEXT_CHARS
    if len(value) > limit:
        return f"at most {limit} characters"
    if value.isprintable():
        # No character of category Cc (nor any other unprintable one): the
        # common case, checked in C instead of a category lookup per character.
        return None
    allowed = frozenset() if identifier else _TEXT_CONTROLS
    for char in value:
        if unicodedata.category(char) == "Cc" and char not in allowed:
            return f"must not contain the control character U+{ord(char):04X}"
    return None


def check_request(message: Message) -> None:
    """Raise InvalidArgument naming every field of `message` out of bounds."""
    violations = Violations()
    _check_message(violations, message, "")
    violations.raise_if_any()


def _check_message(violations: Violations, message: Message, prefix: str) -> None:
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.is_repeated:
            for index, item in enumerate(value):
                _check_value(violations, field, item, f"{path}[{index}]")
        else:
            _check_value(violations, field, value, path)


def _check_value(violations: Violations, field: FieldDescriptor, value: object, path: str) -> None:
    problem = _problem(field, value)
    if problem is not None:
        violations.add(path, problem)
    elif isinstance(value, Message) and not _is_timestamp(field):
        _check_message(violations, value, path + ".")


def _problem(field: FieldDescriptor, value: object) -> str | None:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING and isinstance(value, str):
        return string_problem(value, identifier=is_identifier(field.name))
    if kind == FieldDescriptor.TYPE_ENUM:
        return None  # each service names an unknown value beside the request's other bad fields
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return None if isinstance(value, float) and math.isfinite(value) else "must be finite"
    if isinstance(value, int) and not isinstance(value, bool):
        return _integer_problem(field.name, value)
    if _is_timestamp(field):
        stamp = cast(timestamp_pb2.Timestamp, value)
        return timestamps.out_of_range(stamp.seconds, stamp.nanos)
    return None


def _is_timestamp(field: FieldDescriptor) -> bool:
    message_type = field.message_type
    return message_type is not None and message_type.full_name == _TIMESTAMP


def _integer_problem(name: str, value: int) -> str | None:
    # Negative values are each service's to refuse: it names them beside the
    # request's other bad fields, and some fields give negatives a meaning.
    limit = MAX_MONEY_MICROS if name.endswith("_micros") else MAX_COUNT
    if value > limit:
        return f"at most {limit:,}"
    return None
