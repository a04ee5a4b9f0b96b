"""google.protobuf.Timestamp <-> aware UTC datetimes, with the range the
services support.

Protobuf accepts seconds from year 1 to 9999 and any int32 nanos; Python's
datetime and the databases overflow near both ends (year 1 in a zone west of
UTC is year 0). Requests are refused outside [EARLIEST, LATEST): far wider than
any real usage record, far inside every overflow.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from services.common.errors import Violations

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_EARLIEST_SECONDS = int(EARLIEST.timestamp())
_LATEST_SECONDS = int(LATEST.timestamp())


def to_proto(instant: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(instant)
    return message


def out_of_range(seconds: int, nanos: int) -> str | None:
    """Why a Timestamp's seconds and nanos cannot be used, or None when they can."""
    if not 0 <= nanos < 1_000_000_000:
        return "nanos must be between 0 and 999,999,999"
    if not _EARLIEST_SECONDS <= seconds < _LATEST_SECONDS:
        return f"must be from {EARLIEST.isoformat()} to before {LATEST.isoformat()}"
    return None


def optional_from_proto(
    violations: Violations, message: Message, field: str, *, name: str | None = None
) -> datetime | None:
    """The aware UTC datetime in message.field; None when unset or out of range
    (then a violation names the field, as `name` when given)."""
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    problem = out_of_range(stamp.seconds, stamp.nanos)
    if problem is not None:
        violations.add(name or field, problem)
        return None
    return stamp.ToDatetime(tzinfo=UTC)
