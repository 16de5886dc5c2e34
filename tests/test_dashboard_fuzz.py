"""Schemathesis fuzzes every endpoint of the dashboard's OpenAPI schema (a few examples each,
in-process over ASGI) on a database filled by a real run: no answer is a server error."""

from __future__ import annotations

import pytest
import schemathesis
from dashboard_support import db_url, shared_grid_db
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from aup.dashboard.app import create_app
from aup.store.store import Store


@pytest.fixture(scope="module")
def grid_db(tmp_path_factory):
    return shared_grid_db(tmp_path_factory)


@pytest.fixture(scope="module")
def api_schema(grid_db):
    store = Store(db_url(grid_db), create=False)
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(store),
                                         headers={"Host": "127.0.0.1"})
    store.close()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call_and_validate(checks=[not_a_server_error, response_schema_conformance],
                                      headers={"Host": "127.0.0.1"})
    assert "not allowed" not in response.text  # the request reached the API itself
