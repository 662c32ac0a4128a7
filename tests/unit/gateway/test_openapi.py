"""/openapi.json describes what the gateway really serves: the worker's own zone documents and
timelines (its flow in-process, streams/testing.py, on the hand-computed scenario) conform to the
schemas; every operation documents its answers and every reference resolves."""

from __future__ import annotations

import re

from contract.settings import Settings
from gateway import openapi
from streams.testing import Pipeline
from tests import scenario
from tests.unit.gateway.test_rest import conforms
from tests.unit.streams.test_pipeline import messages


def test_the_workers_documents_and_timelines_conform():
    pipe = Pipeline(Settings(zones=scenario.ZONES_FILE, partitions=2))
    pipe.feed(messages(), batch=3)
    timelines = pipe.timelines()
    pipe.finish()
    timelines.update(pipe.timelines())
    docs = pipe.documents()
    assert len(docs) == 5 and len(timelines) >= 6
    for d in docs.values():
        conforms(d, openapi.SCHEMAS["ZoneState"])
    assert {t["status"] for t in timelines.values()} >= {"arrived", "breached"}
    for t in timelines.values():
        conforms(t, openapi.SCHEMAS["IncidentTimeline"])
    # the schemas are strict (contract/schemas.py: additionalProperties false): nothing the worker
    # writes goes undocumented
    assert openapi.SCHEMAS["ZoneState"]["additionalProperties"] is False
    assert openapi.SCHEMAS["IncidentTimeline"]["additionalProperties"] is False


def test_every_operation_documents_its_answers_and_refs_resolve():
    seen = set()

    def walk(x):
        if isinstance(x, dict):
            if "$ref" in x:
                seen.add(x["$ref"].rsplit("/", 1)[1])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(openapi.SPEC)
    assert seen <= set(openapi.SCHEMAS), seen - set(openapi.SCHEMAS)
    for path, ops in openapi.SPEC["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (path, method)
    ingest = openapi.SPEC["paths"]["/ingest/{source}"]["post"]
    assert set(ingest["responses"]) >= {"200", "401", "403", "404", "413", "503"}
    assert "Retry-After" in ingest["responses"]["503"]["headers"]


def test_every_route_of_the_gateway_is_documented_with_its_methods():
    """The route table (gateway/app.py) against the document's paths: an endpoint added to the one
    must be described in the other, each method it answers too (Starlette adds HEAD to GET)."""
    from starlette.routing import Route, WebSocketRoute

    from gateway.app import create_app

    app = create_app(Settings(gateway_tokens=("a-token-of-16-chars",), zones=scenario.ZONES_FILE))
    served: dict[str, set[str]] = {}
    for route in app.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)   # {zone_id:path} -> {zone_id}
        methods = {"get"} if isinstance(route, WebSocketRoute) else {m.lower() for m in route.methods or ()} - {"head"}
        assert isinstance(route, Route | WebSocketRoute), route
        served.setdefault(path, set()).update(methods)
    documented = {path: set(ops) for path, ops in openapi.SPEC["paths"].items()}
    assert served == documented
    for name in ("Post", "Checkpoint", "Phase"):   # the duty plan's documents are the contract's
        assert openapi.SCHEMAS[name]["additionalProperties"] is False
