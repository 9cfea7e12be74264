"""Issue 19, least privilege for people (docs/security.md): what ops is answered loses every
personal field, an answer that is a document is refused to ops, and an agent's scope travels in
the console's signed token (claims `regions`, `dealers`) and is read back exactly."""

from __future__ import annotations

import httpx
import jwt
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from aftersales.infra import console_key_pair
from services.console.tokens import person_token, signing_key
from shared.http import Principal, console_public_key, verify_person_token
from shared.privacy import MASK, OpsSeeNoPersonalData, mask_personal


def test_personal_fields_are_masked_at_any_depth_and_ids_times_counts_stay() -> None:
    answer = {
        "total": 2, "from": "2026-11-01T00:00:00+08:00", "to": "2026-11-08T00:00:00+08:00",
        "calls": [
            {"call_id": "c1", "customer_id": "C-1", "region": "east", "dealer_id": "D-1", "name": "张伟",
             "phone": "+8613800138000", "notes": "客户说住在西湖路1号", "talking_points": ["刹车", "保养"],
             "satisfied": True, "summary": None},
            {"call_id": "c2", "customer_id": "C-2", "timeline": [{"kind": "comment", "text": "联系了李娜"}]},
        ],
        "letter": {"addressee": "李娜", "postal_address": "杭州市文三路2号", "body": "尊敬的李娜…", "subject": "保养提醒"},
        "counts": {"phone": 3, "email": 1},
    }
    masked = mask_personal(answer)
    assert (masked["total"], masked["from"], masked["to"]) == (2, answer["from"], answer["to"])
    first = masked["calls"][0]
    assert (first["call_id"], first["customer_id"], first["region"], first["dealer_id"], first["satisfied"]) == (
        "c1", "C-1", "east", "D-1", True)
    assert (first["name"], first["phone"], first["notes"]) == (MASK, MASK, MASK)
    assert first["talking_points"] == [MASK, MASK] and first["summary"] is None, "missing stays visible"
    assert masked["calls"][1]["timeline"] == [{"kind": "comment", "text": MASK}]
    assert masked["letter"] == {"addressee": MASK, "postal_address": MASK, "body": MASK, "subject": "保养提醒"}
    assert masked["counts"] == {"phone": 3, "email": 1}, "a count named like a field says nothing of a person"
    for value in ("张伟", "李娜", "13800138000", "西湖路", "文三路"):
        assert value not in str(masked), value


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/case")
    async def case(request: Request, role: str) -> dict[str, str]:
        request.state.principal = Principal(role=role, subject="x")
        return {"complaint_id": "CMP-1", "description": "张伟 13800138000"}

    @app.get("/photo")
    async def photo(request: Request, role: str) -> Response:
        request.state.principal = Principal(role=role, subject="x")
        return Response(b"\x89PNG...", media_type="image/png")

    app.add_middleware(OpsSeeNoPersonalData)
    return app


async def test_the_middleware_masks_only_what_ops_is_answered_and_refuses_ops_a_document() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as client:
        ops = await client.get("/case", params={"role": "ops"})
        agent = await client.get("/case", params={"role": "agent"})
        ops_photo = await client.get("/photo", params={"role": "ops"})
        agent_photo = await client.get("/photo", params={"role": "agent"})
    assert ops.json() == {"complaint_id": "CMP-1", "description": MASK}
    assert int(ops.headers["content-length"]) == len(ops.content)
    assert agent.json()["description"] == "张伟 13800138000"
    assert ops_photo.status_code == 403 and "sees no personal data" in ops_photo.json()["detail"]
    assert (agent_photo.status_code, agent_photo.content) == (200, b"\x89PNG...")


def test_an_agents_scope_travels_in_the_console_token_and_only_an_agent_has_one() -> None:
    private, public = console_key_pair()
    key, verifier = signing_key(private), console_public_key(public)
    agent = verify_person_token(person_token(key, "wang.fang", "agent", 5, regions=["east", "north"],
                                             dealers=["D-07"]), verifier)
    assert (agent.regions, agent.dealers, agent.scoped) == (("east", "north"), ("D-07",), True)
    hotline = verify_person_token(person_token(key, "li.qiang", "agent", 5), verifier)
    assert (hotline.regions, hotline.dealers, hotline.scoped) == ((), (), False)
    supervisor = verify_person_token(person_token(key, "liu.yang", "supervisor", 5, regions=["east"]), verifier)
    assert not supervisor.scoped and supervisor.regions == (), "a supervisor sees the whole group"
    forged = jwt.encode({**jwt.decode(person_token(key, "x", "agent", 5), options={"verify_signature": False}),
                         "regions": "east"}, key, algorithm="EdDSA")
    with pytest.raises(ValueError, match="list of codes"):
        verify_person_token(forged, verifier)

