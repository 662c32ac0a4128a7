"""deploy/tools.py: a cached tool is used as it is (no Go needed), a missing Go is a clear error,
our own Go programs are rebuilt when their sources change."""

from __future__ import annotations

import os

import pytest

from tests.deploy.conftest import load_tools


@pytest.fixture
def tools(monkeypatch, tmp_path):
    mod = load_tools()
    monkeypatch.setenv("ZONEWATCH_STACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ZONEWATCH_GO", raising=False)
    return mod


def test_the_cache_follows_zonewatch_stack_cache(tools, tmp_path):
    assert tools.tool_path("promtool") == (tmp_path / "cache" / "tools" / f"promtool-{tools.PROMETHEUS_VERSION}"
                                           / "bin" / "promtool")


def test_a_cached_tool_is_returned_without_building(tools, monkeypatch):
    target = tools.tool_path("kustomize")
    target.parent.mkdir(parents=True)
    target.write_text("#!/bin/sh\necho cached\n")
    target.chmod(0o755)
    monkeypatch.setenv("PATH", "")                 # no go anywhere: a build attempt would fail
    monkeypatch.setattr(tools, "GO_FALLBACKS", ())
    assert tools.ensure("kustomize", quiet=True) == target


def test_missing_go_is_a_clear_error(tools, monkeypatch):
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(tools, "GO_FALLBACKS", ())
    with pytest.raises(tools.ToolError, match="the Go toolchain is needed .* `go` is not on PATH"):
        tools.ensure("kustomize", quiet=True)
    assert not tools.tool_path("kustomize").exists()


def test_a_wrong_zonewatch_go_is_named(tools, monkeypatch, tmp_path):
    monkeypatch.setenv("ZONEWATCH_GO", str(tmp_path / "no-go"))
    with pytest.raises(tools.ToolError, match="ZONEWATCH_GO=.*no-go is not an executable go binary"):
        tools.ensure("promtool", quiet=True)


def test_unknown_tool(tools):
    with pytest.raises(tools.ToolError, match="unknown tool 'helm'"):
        tools.ensure("helm")


def test_own_programs_are_keyed_by_their_sources(tools, tmp_path):
    src = tmp_path / "prog"
    src.mkdir()
    (src / "go.mod").write_text("module x\n")
    (src / "main.go").write_text("package main\nfunc main() {}\n")
    before = tools._sources_hash(src)
    (src / "README").write_text("not a source")
    assert tools._sources_hash(src) == before
    (src / "main.go").write_text("package main\nfunc main() { println() }\n")
    assert tools._sources_hash(src) != before
    assert os.path.basename(os.path.dirname(os.path.dirname(tools.tool_path("k8scheck")))).startswith("k8scheck-")
