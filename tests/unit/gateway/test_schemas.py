"""gateway/schemas.py: GET /schemas/{name}.json serves contract/schemas.py's schemas, without a token."""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from contract import schemas as contract_schemas
from gateway import schemas

# the one line gateway/app.py registers it with
APP = Starlette(routes=[Route("/schemas/{name}.json", schemas.schema)])


def test_every_published_schema_is_served_as_the_contract_builds_it():
    with TestClient(APP) as client:
        index = client.get("/schemas/index.json")
        assert index.status_code == 200
        listed = [s["name"] for s in index.json()["schemas"]]
        assert listed == contract_schemas.names()
        for entry in index.json()["schemas"]:
            r = client.get(entry["href"])
            assert r.status_code == 200, entry
            assert r.headers["content-type"] == "application/schema+json"
            assert orjson.loads(r.content) == contract_schemas.schema(entry["name"])


def test_dotted_topic_names_and_unknown_names():
    with TestClient(APP) as client:
        assert client.get("/schemas/calls.110.json").json()["title"] == "calls.110 record"
        r = client.get("/schemas/zone-events.json")   # internal: not served
        assert r.status_code == 404 and "index.json" in r.json()["error"]
        assert client.get("/schemas/../openapi.json").status_code == 404
