"""Pytest fixtures for the fake servers and the integrations' table; import them into a test module."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from tests.conftest import REGION, table_definition
from tests.fakes.fake_maintainx import FakeMaintainX
from tests.fakes.fake_slack import FakeSlack

INTEGRATIONS_TABLE = "integrations"


@pytest.fixture
def fake_maintainx() -> Iterator[FakeMaintainX]:
    with FakeMaintainX() as server:
        yield server


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def integrations_table(aws: None) -> str:
    """IntegrationsTable in moto, with the key schema from template.yaml."""
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=INTEGRATIONS_TABLE, **table_definition("IntegrationsTable")
    )
    return INTEGRATIONS_TABLE
