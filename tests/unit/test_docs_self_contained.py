"""The repository describes its own contracts: nothing in README.md or docs/ points to a file
outside the repository (a design note, a conventions file, a work plan kept elsewhere, an
absolute path of someone's machine), and every relative link resolves to a file or directory
in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEXT_SUFFIXES = {".md", ".yaml", ".yml", ".json", ".txt"}
# Files that exist beside the repository but not in it, and paths of a machine.
OUTSIDE = [
    (re.compile(r"\bDESIGN\.md\b"), "DESIGN.md is not in the repository"),
    (re.compile(r"\bCONVENTIONS\.md\b"), "CONVENTIONS.md is not in the repository"),
    (re.compile(r"\bseed/\d{3}_"), "the seed directory is not in the repository"),
    (re.compile(r"(?<![\w/.])\.\./shared/"), "../shared is outside the repository"),
    (re.compile(r"(?<![\w.:/])/(?:work|home|root|Users)/[\w.-]+"), "an absolute path of a machine"),
    (re.compile(r"\bfile://"), "a file:// link"),
]
# Markdown links and images, and HTML src/href attributes.
LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|(?:src|href)=\"([^\"]+)\"")


def documents() -> list[Path]:
    found = [ROOT / "README.md"]
    for path in sorted((ROOT / "docs").rglob("*")):
        if path.is_file() and path.suffix in TEXT_SUFFIXES and "releases" not in path.relative_to(ROOT / "docs").parts:
            found.append(path)
    return found


def problems(path: Path, text: str, root: Path = ROOT) -> list[str]:
    """Every reference in `text` (the content of `path`) to something outside the repository."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for pattern, why in OUTSIDE:
            for match in pattern.finditer(line):
                found.append(f"{path.relative_to(root)}:{number}: {match.group(0)!r}: {why}")
        if path.suffix != ".md":
            continue
        for match in LINK.finditer(line):
            target = match.group(1) or match.group(2)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
                continue  # a URL (https:, mailto:) or an anchor on the same page
            relative = target.split("#", 1)[0]
            resolved = (root / relative.lstrip("/")) if relative.startswith("/") else (path.parent / relative)
            resolved = resolved.resolve()
            if not resolved.is_relative_to(root.resolve()):
                found.append(f"{path.relative_to(root)}:{number}: link {target!r} leaves the repository")
            elif not resolved.exists():
                found.append(f"{path.relative_to(root)}:{number}: link {target!r} resolves to no file in the repository")
    return found


def test_readme_and_docs_point_only_inside_the_repository() -> None:
    found = [p for path in documents() for p in problems(path, path.read_text(encoding="utf-8"))]
    assert not found, "references outside the repository:\n" + "\n".join(found)


def test_the_contract_pages_are_there() -> None:
    for name in ("events.md", "events-catalog.md", "rules.md", "api/README.md"):
        assert (ROOT / "docs" / name).is_file(), name
    assert any((ROOT / "docs" / "schemas").rglob("*.v1.json"))


@pytest.mark.parametrize("text,expected", [
    ("Every record is one envelope (DESIGN.md §3).", "DESIGN.md is not in the repository"),
    ("How code should feel: CONVENTIONS.md.", "CONVENTIONS.md is not in the repository"),
    ("See [the kernel](../shared/kernel.md).", "../shared is outside the repository"),
    ("The plan is in /work/shared/seed/000_da413c591cf8a2ba.txt.", "an absolute path of a machine"),
    ("See [the plan](../../outside.md).", "leaves the repository"),
    ("See [the missing page](no-such-page.md#part).", "resolves to no file in the repository"),
    ('<img src="images/nowhere.png">', "resolves to no file in the repository"),
])
def test_the_scan_finds_each_kind_of_outside_reference(text: str, expected: str) -> None:
    found = problems(ROOT / "docs" / "example.md", text)
    assert any(expected in p for p in found), found


def test_the_scan_lets_links_inside_the_repository_and_urls_pass() -> None:
    text = ("[events](events.md#headers) [api](api/) [chart](../deploy/helm/aftersales) [top](#topics) "
            "[CloudEvents](https://cloudevents.io) see `services/quality/config.py`")
    assert problems(ROOT / "docs" / "example.md", text) == []


def test_the_generated_contract_pages_are_current() -> None:
    from tools import generated_pages

    stale = generated_pages.stale()
    assert not stale, f"docs/{', docs/'.join(stale)} stale: run `aftersales docs` and commit the result"
    catalog = (ROOT / "docs" / "events-catalog.md").read_text()
    from shared.events import CATALOG

    for topic, event_type in CATALOG:
        assert f"schemas/{topic}/{event_type}.v" in catalog, (topic, event_type)
    assert "`AFTERSALES_FOLLOWUP_FIRST_VISIT_AFTER_DAYS` | `3`" in (ROOT / "docs" / "rules.md").read_text()
