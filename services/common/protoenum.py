"""Plain enums <-> protobuf enums, matched by name.

A service's own enum (e.g. Outcome.CACHE_HIT_EXACT) corresponds to the proto
value PREFIX_NAME (USAGE_OUTCOME_CACHE_HIT_EXACT). Deriving the mapping instead
of listing it means a member the proto lacks fails at start, not at the first
request that uses it.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

E = TypeVar("E", bound=enum.Enum)


def to_proto(members: type[E], proto_enum: Any, prefix: str) -> dict[E, int]:
    """Each member's proto value; raises ValueError for a member the proto lacks."""
    return {member: proto_enum.Value(prefix + member.name) for member in members}


def from_proto(members: type[E], proto_enum: Any, prefix: str) -> dict[int, E]:
    return {value: member for member, value in to_proto(members, proto_enum, prefix).items()}
