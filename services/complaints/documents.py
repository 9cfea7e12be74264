"""Handling documents on disk: one file per document under the configured directory, at a
path the service builds from ids it generated (a client's filename is kept as metadata only,
never used as a path)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
EXTENSIONS = {"text/plain": ".txt", "text/markdown": ".md", "image/jpeg": ".jpg", "image/png": ".png",
              "image/webp": ".webp", "application/pdf": ".pdf", "audio/mpeg": ".mp3", "audio/wav": ".wav",
              "audio/mp4": ".m4a", "audio/ogg": ".ogg"}
TEXT_TYPES = ("text/plain", "text/markdown")


def _is_mp3(data: bytes) -> bool:
    return data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)


# What the first bytes of each kind of file are (the declared type is checked against them, so a
# script renamed .jpg is refused; the file is never run or parsed beyond this).
SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    "image/jpeg": lambda d: d[:3] == b"\xff\xd8\xff",
    "image/png": lambda d: d[:8] == b"\x89PNG\r\n\x1a\n",
    "image/webp": lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP",
    "application/pdf": lambda d: d[:5] == b"%PDF-",
    "audio/mpeg": _is_mp3,
    "audio/wav": lambda d: d[:4] == b"RIFF" and d[8:12] == b"WAVE",
    "audio/mp4": lambda d: d[4:8] == b"ftyp",
    "audio/ogg": lambda d: d[:4] == b"OggS",
}


def content_matches(content_type: str, data: bytes) -> bool:
    """Whether the bytes are what the declared type says (text: UTF-8 without NUL)."""
    if content_type in TEXT_TYPES:
        try:
            return b"\x00" not in data and bool(data.decode("utf-8"))
        except UnicodeDecodeError:
            return False
    check = SIGNATURES.get(content_type)
    return bool(check and check(data))


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

    async def write(self, complaint_id: str, document_id: str, content: str | bytes, content_type: str) -> Written:
        path = self._path(complaint_id, document_id, content_type)
        data = content.encode("utf-8") if isinstance(content, str) else content
        await asyncio.to_thread(_write_atomically, path, data)
        return Written(str(path.relative_to(self.root)), len(data), hashlib.sha256(data).hexdigest())

    async def read(self, relative: str) -> str:
        return (await self.read_bytes(relative)).decode("utf-8")

    async def read_bytes(self, relative: str) -> bytes:
        return await asyncio.to_thread(self._within(relative).read_bytes)

    async def delete(self, relative: str) -> bool:
        """Delete a document's file (its customer was erased); False if it was gone already."""
        return await asyncio.to_thread(_delete, self._within(relative))


def _delete(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
