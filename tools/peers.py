"""Local message peers for the demo and the tests: an SMTP server (aiosmtpd) and an HTTP
SMS-gateway sink. Both keep what they receive, so a person can see the messages at
http://127.0.0.1:8025/ and a test can read them back. Production points the notifier at
real providers instead.

The SMS gateway speaks a small provider-style API:
    POST /v1/sms   Authorization: Bearer <api key>, Idempotency-Key: <id>
                   {"to": "+8613812345678", "text": "...", "sender": "Aftersales"}
    -> 200 {"message_id": ..., "status": "accepted", "duplicate": false}
A repeated Idempotency-Key is answered with the first result and not delivered again.
`POST /_control/faults {"status": 503, "count": 2}` makes the next answers fail (tests).
`POST /v1/alerts` keeps Alertmanager's webhook notifications (the compose stack's on-call
webhook), listed by `GET /v1/alerts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import html
import signal
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from tools.sandbox import free_port


@dataclass
class ReceivedMail:
    message_id: str
    mail_from: str
    rcpt_to: list[str]
    subject: str
    text: str
    html: str | None
    headers: dict[str, str]
    received_at: float


@dataclass
class ReceivedSms:
    message_id: str
    to: str
    text: str
    sender: str | None
    idempotency_key: str | None
    received_at: float


@dataclass
class PeerStore:
    """What the peers received. Thread-safe: the SMTP server runs in its own thread."""

    directory: Path | None = None
    mails: list[ReceivedMail] = field(default_factory=list)
    sms: list[ReceivedSms] = field(default_factory=list)
    sms_attempts: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # Alertmanager webhook notifications
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_mail(self, mail: ReceivedMail) -> None:
        with self._lock:
            self.mails.append(mail)
            self._append("mail.jsonl", asdict(mail))

    def add_sms(self, sms: ReceivedSms) -> None:
        with self._lock:
            self.sms.append(sms)
            self._append("sms.jsonl", asdict(sms))

    def add_alert(self, notification: dict[str, Any]) -> None:
        with self._lock:
            self.alerts.append(notification)
            self._append("alerts.jsonl", notification)

    def _append(self, name: str, record: dict[str, Any]) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / name).open("ab") as fh:
            fh.write(orjson.dumps(record) + b"\n")


class _MailHandler:
    def __init__(self, store: PeerStore, fail_next: list[int]) -> None:
        self.store = store
        self.fail_next = fail_next  # [count] of temporary failures to answer with 451

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.fail_next and self.fail_next[0] > 0:
            self.fail_next[0] -= 1
            return "451 4.3.0 Temporary failure, try again later"
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw if isinstance(raw, bytes) else raw.encode(), policy=email.policy.default)
        text_part = message.get_body(preferencelist=("plain",))
        html_part = message.get_body(preferencelist=("html",))
        self.store.add_mail(
            ReceivedMail(
                message_id=str(message.get("Message-ID", "")),
                mail_from=envelope.mail_from or "",
                rcpt_to=list(envelope.rcpt_tos),
                subject=str(message.get("Subject", "")),
                text=text_part.get_content() if text_part is not None else "",
                html=html_part.get_content() if html_part is not None else None,
                headers={k: str(v) for k, v in message.items()},
                received_at=time.time(),
            )
        )
        return "250 Message accepted for delivery"


class MailSink:
    """A real SMTP server on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self, store: PeerStore, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.store = store
        self.host = host
        self.port = port or free_port()
        self.fail_next = [0]
        self._controller = Controller(_MailHandler(store, self.fail_next), hostname=host, port=self.port)

    def start(self) -> MailSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._controller.stop()


class SmsIn(BaseModel):
    to: str = Field(min_length=3, max_length=32)
    text: str = Field(min_length=1, max_length=1000)
    sender: str | None = None


@dataclass
class _Faults:
    status: int = 200
    count: int = 0
    delay_seconds: float = 0.0


def sms_gateway_app(store: PeerStore, api_key: str | None) -> FastAPI:
    app = FastAPI(title="Local SMS gateway sink", docs_url=None, redoc_url=None)
    faults = _Faults()
    by_key: dict[str, dict[str, Any]] = {}

    @app.post("/v1/sms")
    async def send_sms(
        body: SmsIn,
        authorization: str | None = Header(None),
        idempotency_key: str | None = Header(None),
    ) -> dict[str, Any]:
        store.sms_attempts.append({"to": body.to, "idempotency_key": idempotency_key, "at": time.time()})
        if faults.delay_seconds:
            await asyncio.sleep(faults.delay_seconds)
        if api_key and authorization != f"Bearer {api_key}":
            raise HTTPException(401, "bad API key")
        if faults.count > 0:
            faults.count -= 1
            raise HTTPException(faults.status, f"injected failure ({faults.status})")
        if not body.to.startswith("+") or not body.to[1:].isdigit():
            raise HTTPException(400, f"'to' must be an E.164 number, got {body.to!r}")
        if idempotency_key and idempotency_key in by_key:
            return {**by_key[idempotency_key], "duplicate": True}
        message_id = str(uuid.uuid4())
        store.add_sms(ReceivedSms(message_id, body.to, body.text, body.sender, idempotency_key, time.time()))
        result = {"message_id": message_id, "status": "accepted", "duplicate": False}
        if idempotency_key:
            by_key[idempotency_key] = result
        return result

    @app.get("/v1/sms")
    async def list_sms() -> list[dict[str, Any]]:
        return [asdict(s) for s in store.sms]

    @app.post("/v1/alerts")
    async def receive_alerts(request: Request) -> dict[str, Any]:
        """Alertmanager's webhook (deploy/alertmanager/alertmanager.yml, the on-call receiver)."""
        try:
            notification = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise HTTPException(400, f"not JSON: {exc}") from None
        if not isinstance(notification, dict) or not isinstance(notification.get("alerts"), list):
            raise HTTPException(422, "an Alertmanager webhook notification has an 'alerts' list")
        store.add_alert({**notification, "received_at": time.time()})
        return {"received": len(notification["alerts"])}

    @app.get("/v1/alerts")
    async def list_alerts() -> list[dict[str, Any]]:
        return store.alerts

    @app.get("/v1/mail")
    async def list_mail() -> list[dict[str, Any]]:
        return [asdict(m) for m in store.mails]

    @app.post("/_control/faults")
    async def set_faults(request: Request) -> dict[str, Any]:
        spec = await request.json()
        faults.status = int(spec.get("status", 503))
        faults.count = int(spec.get("count", 1))
        faults.delay_seconds = float(spec.get("delay_seconds", 0))
        return asdict(faults)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        rows_sms = "".join(
            f"<tr><td>{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(s.received_at))}</td>"
            f"<td>{html.escape(s.to)}</td><td>{html.escape(s.text)}</td></tr>"
            for s in reversed(store.sms[-200:])
        )
        rows_mail = "".join(
            f"<tr><td>{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(m.received_at))}</td>"
            f"<td>{html.escape(', '.join(m.rcpt_to))}</td><td>{html.escape(m.subject)}</td>"
            f"<td><pre>{html.escape(m.text[:2000])}</pre></td></tr>"
            for m in reversed(store.mails[-200:])
        )
        return (
            "<!doctype html><meta charset='utf-8'><title>Aftersales message peers</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{border-bottom:1px solid #ddd;padding:4px;"
            "vertical-align:top;text-align:left}pre{white-space:pre-wrap;margin:0}</style>"
            f"<h1>Messages received locally</h1><h2>SMS ({len(store.sms)})</h2>"
            f"<table><tr><th>received</th><th>to</th><th>text</th></tr>{rows_sms}</table>"
            f"<h2>E-mail ({len(store.mails)})</h2>"
            f"<table><tr><th>received</th><th>to</th><th>subject</th><th>text</th></tr>{rows_mail}</table>"
        )

    return app


class SmsGatewaySink:
    """The SMS gateway sink served by uvicorn inside the current event loop."""

    def __init__(self, store: PeerStore, port: int | None = None, api_key: str | None = None,
                 host: str = "127.0.0.1") -> None:
        self.store = store
        self.port = port or free_port()
        self.app = sms_gateway_app(store, api_key)
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host=host, port=self.port, log_config=None, access_log=False, lifespan="off")
        )
        self._server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # the host process owns signals
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/sms"

    async def start(self) -> SmsGatewaySink:
        self._server.config.load()
        self._server.lifespan = self._server.config.lifespan_class(self._server.config)
        self._task = asyncio.ensure_future(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)


async def run_peers(directory: Path, smtp_port: int, http_port: int, api_key: str | None,
                    host: str = "127.0.0.1") -> None:
    """`aftersales peers`: both sinks until SIGTERM."""
    store = PeerStore(directory=directory)
    mail = MailSink(store, port=smtp_port, host=host).start()
    gateway = SmsGatewaySink(store, port=http_port, api_key=api_key, host=host)
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.stop()
    mail.stop()
