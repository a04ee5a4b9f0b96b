"""DESIGN.md invariants that hold for the code as a whole, checked over every
RPC, message field and column rather than one example at a time."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor
from recipeimage.budget.v1 import budget_service_pb2
from recipeimage.image.v1 import image_service_pb2
from sqlalchemy import BigInteger

from services.budget.servicer import BudgetServicer
from services.budget.store import models as budget_models
from services.image.servicer import ImageServicer
from services.image.store import models as image_models

SERVICES = [
    (budget_service_pb2.DESCRIPTOR.services_by_name["BudgetService"], BudgetServicer),
    (image_service_pb2.DESCRIPTOR.services_by_name["ImageService"], ImageServicer),
]


@pytest.mark.parametrize(("service", "servicer"), SERVICES, ids=lambda s: getattr(s, "name", ""))
def test_every_rpc_goes_through_the_authenticating_edge(service, servicer) -> None:
    """Unauthenticated calls get nothing but health and reflection: every
    method of every service is wrapped by @rpc, which authenticates first."""
    for method in service.methods:
        handler = getattr(servicer, method.name)
        assert getattr(handler, "rpc_roles", None), f"{service.name}/{method.name} is not @rpc"


def _messages(file_descriptor):  # type: ignore[no-untyped-def]
    pending = list(file_descriptor.message_types_by_name.values())
    while pending:
        message = pending.pop()
        pending.extend(message.nested_types)
        yield message


@pytest.mark.parametrize("module", [budget_service_pb2, image_service_pb2], ids=["budget", "image"])
def test_money_in_the_contracts_is_int64_micros_never_a_float(module) -> None:
    for message in _messages(module.DESCRIPTOR):
        for field in message.fields:
            if field.name.endswith("_micros"):
                assert field.type == FieldDescriptor.TYPE_INT64, f"{message.name}.{field.name}"
            if "cost" in field.name or "spent" in field.name or "limit" in field.name:
                assert field.type not in (
                    FieldDescriptor.TYPE_FLOAT,
                    FieldDescriptor.TYPE_DOUBLE,
                ), f"{message.name}.{field.name} is money as a float"


@pytest.mark.parametrize("metadata", [budget_models.Base.metadata, image_models.metadata])
def test_money_in_the_databases_is_a_64_bit_integer(metadata) -> None:
    money = [
        column
        for table in metadata.tables.values()
        for column in table.columns
        if column.name.endswith("_micros")
    ]
    assert money, "no money columns found"
    for column in money:
        assert isinstance(column.type, BigInteger), f"{column.table.name}.{column.name}"
