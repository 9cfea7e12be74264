"""Handling documents on disk: one file per document under the configured directory, at a
path the service builds from ids it generated (a client's filename is kept as metadata only,
never used as a path)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
EXTENSIONS = {"text/plain": ".txt", "text/markdown": ".md"}


@dataclass(frozen=True)
class Written:
    path: str  # relative to the root
    size_bytes: int
    sha256: str


class DocumentFiles:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, complaint_id: str, document_id: str, content_type: str) -> Path:
        if not (_ID.match(complaint_id) and _ID.match(document_id)):
            raise ValueError("document paths are built from service-generated ids only")
        path = (self.root / complaint_id / f"{document_id}{EXTENSIONS[content_type]}").resolve()
        if not path.is_relative_to(self.root):  # defence in depth: ids cannot escape, but check
            raise ValueError(f"document path {path} is outside {self.root}")
        return path

    def _within(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"document path {relative!r} is outside the documents directory")
        return path

    async def write(self, complaint_id: str, document_id: str, content: str, content_type: str) -> Written:
        path = self._path(complaint_id, document_id, content_type)
        data = content.encode("utf-8")
        await asyncio.to_thread(_write_atomically, path, data)
        return Written(str(path.relative_to(self.root)), len(data), hashlib.sha256(data).hexdigest())

    async def read(self, relative: str) -> str:
        return (await asyncio.to_thread(self._within(relative).read_bytes)).decode("utf-8")


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
