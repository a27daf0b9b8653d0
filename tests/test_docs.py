"""The documentation holds together without building it: links, pictures, the site's nav, the API reference's names,
and the architecture page's list of test files. (CI also builds the site with ``mkdocs build --strict``.)"""

from __future__ import annotations

import importlib
import re
import unicodedata
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = sorted([REPO / "README.md", *DOCS.rglob("*.md")])
# [text](target) and ![alt](target); a target is one token (no spaces), optionally followed by a title.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def without_code(text: str) -> str:
    """The markdown with fenced code blocks and inline code removed: links inside code are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """The anchor Python-Markdown's ``toc`` extension (MkDocs) and GitHub give a heading, for the headings used here."""
    text = re.sub(r"[`*_]", "", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)}


def broken_links(page: Path) -> list[str]:
    """Each relative link of ``page`` whose file, or whose anchor in that file, does not exist."""
    broken = []
    for target in LINK.findall(without_code(page.read_text())):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto: - not checked (no network)
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with that anchor")
    return broken


def test_the_link_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# A page\n\n## Some `code`: here\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md) [ok](a.md#some-code-here) ![pic](missing.png) [gone](a.md#nowhere) `[code](x.md)`\n"
        "```bash\n[not a link](y.md)\n```\n[web](https://example.com/x)\n"
    )
    assert broken_links(page) == ["missing.png: no such file", "a.md#nowhere: no heading with that anchor"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_picture_exists(page):
    assert broken_links(page) == []


def test_readme_is_a_front_page():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


def nav_pages(nav: list) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_every_page_is_in_the_site_nav_and_every_nav_entry_exists():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    listed = nav_pages(config["nav"])
    on_disk = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "models" not in p.parts)
    assert sorted(listed) == on_disk


def reference_names() -> list[str]:
    return [
        m.group(1)
        for page in sorted((DOCS / "reference").glob("*.md"))
        for m in re.finditer(r"^::: (\S+)", page.read_text(), re.M)
    ]


@pytest.mark.parametrize("name", reference_names())
def test_every_api_reference_name_exists(name):
    """What mkdocstrings will render: a module, or a module's attribute (the longest importable prefix)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return
    pytest.fail(f"{name}: no such module")


def test_the_architecture_page_names_every_test_file_and_only_real_ones():
    text = (DOCS / "architecture.md").read_text()
    named = set(re.findall(r"`(test_\w+\.py)`", text))
    files = {p.name for p in (REPO / "tests").glob("test_*.py")}
    assert sorted(files - named) == [] and sorted(named - files) == []
