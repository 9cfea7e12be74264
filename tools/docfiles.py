"""Writing and checking generated documents (`aftersales docs` and `--check`): one rule for the
API documents, the event schemas and the generated pages."""

from __future__ import annotations

from pathlib import Path


def write_files(directory: Path, files: dict[str, str]) -> list[Path]:
    """Write each relative path's content where it differs; return the files that changed."""
    changed = []
    for relative, content in files.items():
        path = directory / relative
        if not path.exists() or path.read_text() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            changed.append(path)
    return changed


def stale_files(directory: Path, files: dict[str, str]) -> list[str]:
    """The relative paths that are missing or differ from the content given."""
    return [relative for relative, content in files.items()
            if not (directory / relative).exists() or (directory / relative).read_text() != content]
