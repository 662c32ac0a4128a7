"""docs/asyncapi.yaml is a valid AsyncAPI 3.0.0 document: checked against the official JSON Schema of
the specification (npm package @asyncapi/specs, pinned by version and integrity, fetched once into
the stack cache like the other tools; the test fails, never skips, when it cannot be fetched)."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import os
import tarfile
import urllib.request
from pathlib import Path

import yaml
from jsonschema import validators

from tests.deploy.conftest import REPO

SPECS_VERSION = "6.11.1"
SPECS_URL = f"https://registry.npmjs.org/@asyncapi/specs/-/specs-{SPECS_VERSION}.tgz"
SPECS_SHA512 = "A3WBLqAKGoJ2+6FWFtpjBlCQ1oFCcs4GxF7zsIGvNqp/klGUHjlA3aAcZ9XMMpLGE8zPeYDz2x9FmO6DSuKraQ=="
MEMBER = "package/schemas/3.0.0-without-$id.json"


def _cache() -> Path:
    root = Path(os.environ.get("ZONEWATCH_STACK_CACHE") or REPO / ".stack")
    return root / "tools" / f"asyncapi-specs-{SPECS_VERSION}.tgz"


def asyncapi_3_schema() -> dict:
    path = _cache()
    if not path.is_file():
        with urllib.request.urlopen(SPECS_URL, timeout=60) as resp:
            data = resp.read()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    data = path.read_bytes()
    got = base64.b64encode(hashlib.sha512(data).digest()).decode()
    assert got == SPECS_SHA512, f"{path}: not @asyncapi/specs {SPECS_VERSION} (sha512 {got}); delete it"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return json.load(tar.extractfile(MEMBER))


def test_asyncapi_document_is_valid_asyncapi_3():
    spec = asyncapi_3_schema()
    v = validators.validator_for(spec)(spec)
    doc = yaml.safe_load((REPO / "docs" / "asyncapi.yaml").read_text(encoding="utf-8"))
    assert doc["asyncapi"] == "3.0.0"
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in v.iter_errors(doc)]
    assert errors == []
    # the check is not vacuous: a wrong Kafka binding or operation is refused
    bad = copy.deepcopy(doc)
    bad["channels"]["zones_state"]["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] = ["shred"]
    bad["operations"]["send_sla_events"]["action"] = "publish"   # AsyncAPI 2 wording
    assert len(list(v.iter_errors(bad))) == 2
