"""The documentation speaks to users: an index of every page, each page opening with what it
is for, working relative links, and no citations of files users cannot see."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md"))
USER_FILES = [ROOT / "README.md", *PAGES, *sorted((ROOT / "examples").glob("*.ipynb"))]
# project-internal sources users do not have: the spec files and their section citations
INTERNAL = re.compile(r"seed.facts|performance.facts|shared/spec|§|\bthe issue\b", re.I)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_index_lists_every_page():
    index = (DOCS / "index.md").read_text()
    linked = {(DOCS / target).resolve() for target in LINK.findall(index)}
    missing = [_rel(p) for p in PAGES if p.name != "index.md" and p.resolve() not in linked]
    assert not missing, f"docs/index.md does not list {missing}"


@pytest.mark.parametrize("page", PAGES, ids=[_rel(p) for p in PAGES])
def test_page_opens_with_its_purpose(page: Path):
    lines = page.read_text().split("\n")
    assert lines[0].startswith("# "), f"{_rel(page)} does not start with a title"
    assert lines[1] == "", f"{_rel(page)}: a blank line after the title"
    assert lines[2][:1].isalpha(), (
        f"{_rel(page)} must open with a sentence saying what the page is for, got {lines[2]!r}")


@pytest.mark.parametrize("path", USER_FILES, ids=[_rel(p) for p in USER_FILES])
def test_no_internal_references(path: Path):
    hits = [f"{_rel(path)}:{i}: {line.strip()}"
            for i, line in enumerate(path.read_text().split("\n"), start=1)
            if INTERNAL.search(line)]
    assert not hits, "state the fact and its public origin instead:\n" + "\n".join(hits)


@pytest.mark.parametrize("path", USER_FILES, ids=[_rel(p) for p in USER_FILES])
def test_relative_links_resolve(path: Path):
    broken = [target for target in LINK.findall(path.read_text())
              if "://" not in target and not (path.parent / target).exists()]
    assert not broken, f"{_rel(path)} links to missing files: {broken}"
