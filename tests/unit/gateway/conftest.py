"""The gateway's log filters, which an in-process server puts on every handler it finds (pytest's
capture handlers included), are taken off after each test: one test's rate limit must not drop
another's lines."""

from __future__ import annotations

import logging

import pytest

from gateway import logs


@pytest.fixture(autouse=True)
def _no_gateway_log_filters():
    yield
    for name in logs.LOGGERS:
        logger = logging.getLogger(name)
        for owner in (logger, *logger.handlers):
            for f in (logs.FILTER, logs.RATE_LIMIT):
                owner.removeFilter(f)
    logs.RATE_LIMIT.kinds.clear()
