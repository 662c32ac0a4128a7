#!/usr/bin/env python3
"""Operations tools built from source with the Go toolchain and cached like Kafka's jars.

Stdlib only; nothing fetched is committed. Each tool is `go install`ed from the Go module proxy at a
pinned version into <cache>/tools/<name>-<version>/bin/, where <cache> is ZONEWATCH_STACK_CACHE or
<repo>/.stack (the same cache as deploy/stack.py's Kafka jars). A build happens once: later calls
find the binary and return at once. Concurrent callers (two test sessions) wait on a lock file.

    prometheus, promtool   github.com/prometheus/prometheus           (rules, unit tests, the live check)
    kustomize              sigs.k8s.io/kustomize/kustomize/v5          (builds deploy/k8s overlays)
    k8scheck               deploy/tools/k8scheck (ours)                 strict decoding of every manifest
                                                                         with the real k8s.io/api and
                                                                         prometheus-operator Go types
    promsignals            deploy/tools/promsignals (ours)              what of a PromQL expression must
                                                                         return data (Prometheus' parser)

CLI:   python3 deploy/tools.py ensure [NAME ...]     build what is missing (all by default), print paths
       python3 deploy/tools.py path NAME              the path of one tool (built first if missing)
Library (tests load this file by path):  ensure("promtool") -> Path

A first build needs the Go toolchain (`go` on PATH, or ZONEWATCH_GO) and the module proxy; it takes
minutes (Prometheus is large) and leaves the module sources in Go's own module cache.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS_VERSION = "v0.316.0"   # Prometheus 3.x line; builds with Go 1.26
KUSTOMIZE_VERSION = "v5.8.2"      # v5.8.3 needs Go 1.27
K8SCHECK_DIR = REPO / "deploy" / "tools" / "k8scheck"
PROMSIGNALS_DIR = REPO / "deploy" / "tools" / "promsignals"
BUILD_TIMEOUT = float(os.environ.get("ZONEWATCH_TOOLS_TIMEOUT", "1800"))


class ToolError(RuntimeError):
    """A tool could not be built or found; the message says what to install or fix."""


@dataclass(frozen=True)
class Tool:
    name: str
    package: str          # `go install` target, or a local directory for our own programs
    version: str          # pinned module version, or a content hash of the local sources

    @property
    def local(self) -> bool:
        return self.package.startswith("/")


def _cache_root() -> Path:
    """The same rule as deploy/stack.py: ZONEWATCH_STACK_CACHE, else <repo>/.stack."""
    env = os.environ.get("ZONEWATCH_STACK_CACHE")
    return Path(env).expanduser().resolve() if env else REPO / ".stack"


def tools_dir() -> Path:
    return _cache_root() / "tools"


def _sources_hash(directory: Path) -> str:
    """Content hash of our own Go program, so an edited validator is rebuilt, an unchanged one not."""
    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        if p.is_file() and (p.suffix == ".go" or p.name in ("go.mod", "go.sum")):
            h.update(str(p.relative_to(directory)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def known_tools() -> dict[str, Tool]:
    return {
        "prometheus": Tool("prometheus", "github.com/prometheus/prometheus/cmd/prometheus", PROMETHEUS_VERSION),
        "promtool": Tool("promtool", "github.com/prometheus/prometheus/cmd/promtool", PROMETHEUS_VERSION),
        "kustomize": Tool("kustomize", "sigs.k8s.io/kustomize/kustomize/v5", KUSTOMIZE_VERSION),
        "k8scheck": Tool("k8scheck", str(K8SCHECK_DIR), _sources_hash(K8SCHECK_DIR)),
        "promsignals": Tool("promsignals", str(PROMSIGNALS_DIR), _sources_hash(PROMSIGNALS_DIR)),
    }


def tool_path(name: str) -> Path:
    """Where the binary of `name` lives once built (whether or not it exists yet)."""
    tool = _tool(name)
    return tools_dir() / f"{tool.name}-{tool.version}" / "bin" / tool.name


def _tool(name: str) -> Tool:
    tools = known_tools()
    if name not in tools:
        raise ToolError(f"unknown tool {name!r}; known: {', '.join(tools)}")
    return tools[name]


GO_FALLBACKS = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")   # official tarball, Debian's golang-go


def _go() -> str:
    explicit = os.environ.get("ZONEWATCH_GO")
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            raise ToolError(f"ZONEWATCH_GO={explicit} is not an executable go binary")
        return explicit
    found = shutil.which("go") or next((p for p in GO_FALLBACKS if os.access(p, os.X_OK)), None)
    if not found:
        raise ToolError("the Go toolchain is needed to build the operations tools (Prometheus, promtool, "
                        "kustomize, k8scheck, promsignals) and `go` is not on PATH: install Go >= 1.26 "
                        "(Debian's golang-go if new enough, or the official tarball) or set ZONEWATCH_GO "
                        "to the go binary")
    return found


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure(name: str, quiet: bool = False) -> Path:
    """The path of tool `name`, built first if it is not in the cache. Raises ToolError."""
    tool = _tool(name)
    target = tool_path(name)
    if _usable(target):
        return target
    with _locked(tools_dir() / f".{tool.name}.lock"):
        if _usable(target):    # another process built it while we waited
            return target
        _build(tool, target, quiet)
    if not _usable(target):
        raise ToolError(f"building {tool.name} reported success but {target} is not executable")
    return target


def _usable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def _build(tool: Tool, target: Path, quiet: bool) -> None:
    go = _go()
    final_dir = target.parent.parent
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{tool.name}-", dir=final_dir.parent))
    staging.chmod(0o755)   # mkdtemp makes it private; the cache is shared like the Kafka jars
    env = dict(os.environ, GOBIN=str(staging / "bin"), CGO_ENABLED=os.environ.get("CGO_ENABLED", "0"),
               GOFLAGS=(os.environ.get("GOFLAGS", "") + " -buildvcs=false").strip())
    if tool.local:
        argv = [go, "build", "-trimpath", "-o", str(staging / "bin" / tool.name), "."]
        cwd = tool.package
    else:
        argv = [go, "install", "-trimpath", f"{tool.package}@{tool.version}"]
        cwd = str(staging)   # outside any module: `go install pkg@version` ignores the current module
    if not quiet:
        print(f"tools: building {tool.name} {tool.version} (first time only; may take minutes)",
              file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ToolError(f"building {tool.name} took longer than {BUILD_TIMEOUT:.0f} s "
                        "(ZONEWATCH_TOOLS_TIMEOUT); is the Go module proxy reachable?") from exc
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ToolError(f"`{' '.join(argv)}` failed ({proc.returncode}) for {tool.name}:\n"
                        f"{(proc.stderr or proc.stdout)[-4000:]}")
    built = staging / "bin" / tool.name
    if not _usable(built):
        shutil.rmtree(staging, ignore_errors=True)
        raise ToolError(f"`{' '.join(argv)}` produced no {tool.name} binary in {staging / 'bin'}")
    if final_dir.exists():
        shutil.rmtree(final_dir)
    staging.rename(final_dir)     # atomic: a half-built tool is never visible under its final name
    if not quiet:
        print(f"tools: {tool.name} built in {time.monotonic() - started:.0f} s -> {target}",
              file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("ensure", help="build missing tools, print their paths")
    e.add_argument("names", nargs="*", help=f"tools (default: all of {', '.join(known_tools())})")
    p = sub.add_parser("path", help="the path of one tool (built if missing)")
    p.add_argument("name")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "path":
            print(ensure(args.name))
        else:
            for name in args.names or list(known_tools()):
                print(f"{name}\t{ensure(name)}")
    except ToolError as exc:
        print(f"tools: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
