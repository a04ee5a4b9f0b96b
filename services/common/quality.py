"""The price table's quality names and the proto's ImageQuality, both ways."""

from __future__ import annotations

from recipeimage.common.v1 import image_quality_pb2

TO_PROTO: dict[str, int] = {
    "low": image_quality_pb2.IMAGE_QUALITY_LOW,
    "medium": image_quality_pb2.IMAGE_QUALITY_MEDIUM,
    "high": image_quality_pb2.IMAGE_QUALITY_HIGH,
}
FROM_PROTO: dict[int, str] = {value: name for name, value in TO_PROTO.items()}


def to_proto(name: str) -> int:
    return TO_PROTO.get(name, image_quality_pb2.IMAGE_QUALITY_UNSPECIFIED)


def from_proto(value: int) -> str:
    """The name for a proto value: empty for unspecified, and for a value this build
    does not know a name no model offers, so validation names the field."""
    if value == image_quality_pb2.IMAGE_QUALITY_UNSPECIFIED:
        return ""
    return FROM_PROTO.get(value, f"unknown quality {value}")
