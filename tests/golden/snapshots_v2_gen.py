"""The fixture tests/golden/snapshots_v2.msgpack of test_recovery's old-snapshot test, made with the
worker before contract v3 (commit d7cc733): the scenario's calls, alerts and first four fixes through the
in-process pipeline with 2 partitions, then every partition's snapshot records and zone documents.

    git archive d7cc733 | tar -x -C /tmp/v2
    PYTHONPATH=/tmp/v2 .venv/bin/python tests/golden/snapshots_v2_gen.py > tests/golden/snapshots_v2.msgpack
"""
import sys

import msgspec
import orjson

from contract.settings import Settings
from streams.testing import Pipeline
from tests import scenario
from tests.unit.streams.test_pipeline import messages

msgs = messages()[:-5]   # all but the last two fixes (and the three invalid calls after them)
pipe = Pipeline(Settings(zones=scenario.ZONES_FILE, partitions=2), keep_log=True)
pipe.feed(msgs, batch=3)
docs = pipe.documents()   # first: reach computed and nothing left dirty, as after a flush
snaps = {p: dict(pipe.stage.snapshot(p)) for p in range(2)}
out = {"partitions": 2, "n_messages": len(msgs),
       "snapshots": {str(p): {k.decode(): v for k, v in kv.items()} for p, kv in snaps.items()},
       "documents": orjson.dumps(docs).decode(), "sla": orjson.dumps(pipe.sla).decode()}
sys.stdout.buffer.write(msgspec.msgpack.encode(out))
