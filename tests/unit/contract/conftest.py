"""Fixtures of the contract's tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def clean_env(monkeypatch):
    """No ZONEWATCH_* variable of the machine's environment: each test sets what it reads."""
    for k in list(os.environ):
        if k.startswith("ZONEWATCH_"):
            monkeypatch.delenv(k)
    return monkeypatch
