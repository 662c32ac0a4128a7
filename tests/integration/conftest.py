"""Integration fixtures: the real Kafka and Redis of deploy/stack.py, and real worker processes.

The stack runs on its own ports and state folder (.stack/test) so a running demo is untouched.
If Kafka or Redis cannot be started or reached the fixture raises: the tests fail, never skip.
Each test gets its own topic prefix, app id (consumer groups) and Redis database: a `Deployment`
of bench/harness.py (shared with the chaos runs), re-exported here for the test modules.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.harness import REPO, Deployment, free_port, wait_until  # noqa: F401  (re-exported)
from deploy import stack as stack_module

KAFKA_PORT = int(os.environ.get("ZONEWATCH_TEST_KAFKA_PORT", 19092))
REDIS_PORT = int(os.environ.get("ZONEWATCH_TEST_REDIS_PORT", 16379))


def _load_stack():
    """deploy/stack.py as a module (up, down, status, stop_service)."""
    return stack_module


@pytest.fixture(scope="session")
def stack():
    state = REPO / ".stack" / "test"
    endpoints = stack_module.up(kafka_port=KAFKA_PORT, redis_port=REDIS_PORT, state_dir=state)
    yield endpoints
    stack_module.down(state_dir=state)


@pytest.fixture
def deployment(stack):
    made = []

    def make(zones: Path, partitions: int = 4, name: str | None = None) -> Deployment:
        d = Deployment(stack, zones, partitions, name)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()
