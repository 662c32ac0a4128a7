"""The README and docs/: a README that stays a README, citations and links that cannot go stale, and
the contract's copy. A citation is a file and a heading in quotes — `docs/DESIGN.md "The clock"`,
`README "Commands"` — in code, comments, docstrings and the docs; it must name a heading that exists
(outside code blocks) in that file, on one line."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_CONTRACT = REPO.parent / "shared" / "CONTRACT.md"
SCANNED = ("*.py", "*.md", "*.html", "*.js", "*.yml", "*.yaml", "*.toml", "*.sh", "*.go", "Makefile")
SKIPPED = {".git", ".venv", ".stack", "node_modules", "test-artifacts", "build", ".hypothesis"}
#: README "X", README's "X", docs/FILE.md "X", docs/FILE.md ("X"), README, "X"; the quote may open on
#: the next line of a comment (this file's own examples are not scanned)
CITATION = re.compile(r'(README(?:\.md)?|docs/[\w-]+\.md)(?:\'s)?[,:]?'
                      r'(?:[ \t]+|[ \t]*\n[ \t]*(?:#|//|\*)?[ \t]*)\(?"([^"\n]*)("?)')
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _sources():
    for pattern in SCANNED:
        for path in REPO.rglob(pattern):
            rel = path.relative_to(REPO)
            if not SKIPPED & set(rel.parts) and path.is_file() and path != Path(__file__).resolve():
                yield path


def headings(path: Path) -> list[str]:
    """The headings of a Markdown file, those inside fenced code blocks left out."""
    out, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            out.append(m.group(2))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def citations() -> list[tuple[str, str, str, bool]]:
    """(where, file cited, heading cited, quote closed on the line) of every citation."""
    out = []
    for path in _sources():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in CITATION.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.append((f"{path.relative_to(REPO)}:{line}", m.group(1), m.group(2), m.group(3) == '"'))
    return out


def test_every_citation_names_a_heading_of_the_file_it_cites():
    found = citations()
    assert len(found) > 40   # the scan sees them (there are about 60)
    bad = []
    for where, cited, heading, closed in found:
        target = REPO / ("README.md" if cited.startswith("README") else cited)
        if not closed:
            bad.append(f"{where}: {cited} \"{heading}… — keep a cited heading on one line")
        elif not target.is_file():
            bad.append(f"{where}: {cited} does not exist")
        elif heading not in headings(target):
            bad.append(f"{where}: {cited} has no heading \"{heading}\"")
    assert not bad, "stale citations:\n" + "\n".join(bad)


def test_every_relative_link_of_the_readme_and_docs_leads_somewhere():
    bad = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue   # http(s), mailto
            file, _, anchor = target.partition("#")
            dest = (doc.parent / file).resolve() if file else doc
            if not dest.exists():
                bad.append(f"{doc.relative_to(REPO)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in {slug(h) for h in headings(dest)}:
                bad.append(f"{doc.relative_to(REPO)}: {target} (no such heading)")
    assert not bad, "\n".join(bad)


def test_the_readme_is_a_readme():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: the manual belongs in docs/"
    first = "\n".join(lines[:60])
    assert "make demo" in first and "make test" in first   # the two commands on the first screen
    assert {"Prerequisites", "Commands", "Documentation"} <= set(headings(REPO / "README.md"))
    # and CI runs the README's test command
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_docs_contract_is_the_contract_of_version_3():
    """A fresh clone has no ../shared: then the copy must still be the v3 contract, whole."""
    copy = (REPO / "docs" / "CONTRACT.md").read_text(encoding="utf-8")
    if SHARED_CONTRACT.is_file():
        assert copy == SHARED_CONTRACT.read_text(encoding="utf-8"), "docs/CONTRACT.md differs from " \
            f"{SHARED_CONTRACT}: copy it again"
    assert copy.startswith("# zonewatch — the external contract\n")
    assert "**Version 3**" in copy
    sections = [h for h in headings(REPO / "docs" / "CONTRACT.md") if re.match(r"\d+\. ", h)]
    assert [int(h.split(".")[0]) for h in sections] == list(range(1, len(sections) + 1)) and len(sections) >= 11
