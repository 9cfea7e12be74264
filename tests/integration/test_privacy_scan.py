"""The erasure tests' scanner finds a value wherever a table or a file can hold it, so their
"nothing found" means something."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tests.privacy_scan import find_in_files, find_in_schema
from tests.support import create_namespace, drop_namespace

pytestmark = pytest.mark.infra


async def test_the_scan_finds_values_in_text_jsonb_arrays_and_bytes_and_not_elsewhere(infra: None) -> None:
    ns = await create_namespace()
    try:
        conn = await asyncpg.connect(ns.settings.database_url)
        try:
            await conn.execute("CREATE SCHEMA scan_probe")
            await conn.execute("CREATE TABLE scan_probe.t (id int, name text, doc jsonb, phones text[], body bytea)")
            await conn.execute("INSERT INTO scan_probe.t VALUES (1, '王小明', $1::jsonb, ARRAY['13800138000'], $2)",
                               '{"address": "上海市浦东新区世纪大道100号"}', b"mail to li@example.com")
            # a session hash or a file's checksum: bytes that are not UTF-8 are scanned, not refused
            await conn.execute("INSERT INTO scan_probe.t VALUES (2, NULL, NULL, NULL, $1)", bytes([0xFF, 0xFE, 0x00, 0x81]))
            found = await find_in_schema(conn, "scan_probe", ["王小明", "世纪大道100号", "13800138000", "LI@example.com"])
            assert found == ["scan_probe.t.body: LI@example.com", "scan_probe.t.doc: 世纪大道100号",
                             "scan_probe.t.name: 王小明", "scan_probe.t.phones: 13800138000"]
            assert await find_in_schema(conn, "scan_probe", ["李四", "13900139000"]) == []
        finally:
            await conn.close()
    finally:
        await drop_namespace(ns)


def test_the_file_scan_finds_plain_and_json_escaped_values(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text('{"name": "\\u738b\\u5c0f\\u660e"}\n', encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("电话 13800138000", encoding="utf-8")
    assert find_in_files(tmp_path, ["王小明", "13800138000", "李四"]) == [
        f"{tmp_path / 'a.log'}: 王小明", f"{tmp_path / 'sub' / 'b.txt'}: 13800138000"]
