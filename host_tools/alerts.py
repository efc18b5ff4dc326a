"""Emails to the supervisor, one per incident: SMTP with STARTTLS, SSL or plain, with login.

Which incidents were already emailed is kept in a small JSON file in the host workdir,
so a monitor run from cron (`--once`) does not send the same alert twice. An alert
that could not be sent is not recorded, so the next run tries again.
"""
from __future__ import annotations

import json
import os
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from coordination.exceptions import WmsError
from coordination.secrets import redact, register_secret

SECURITY = ("starttls", "ssl", "none")


class AlertError(WmsError):
    """An alert email could not be sent (server down, login refused, TLS failed)."""


@dataclass
class SmtpSettings:
    host: str
    port: int = 587
    user: str | None = None
    password: str | None = None
    security: str = "starttls"
    sender: str = "wms-monitor@localhost"
    to: tuple[str, ...] = ()
    ca_file: str | None = None  # trust this CA (a self-hosted mail server's certificate)
    timeout: float = 30.0

    def __post_init__(self):
        if self.security not in SECURITY:
            raise AlertError(f"SMTP security must be one of {', '.join(SECURITY)} (got {self.security!r}).")
        if not self.to:
            raise AlertError("No alert recipient: set WMS_ALERT_TO in .env or pass --alert-to ADDR.")
        if self.password:
            register_secret(self.password)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def parse_recipients(value: str | None) -> tuple[str, ...]:
    return tuple(a.strip() for a in (value or "").replace(";", ",").split(",") if a.strip())


@dataclass
class Incident:
    key: str  # stable: the same incident always has the same key
    subject: str
    body: str


class Mailer:
    def __init__(self, settings: SmtpSettings):
        self.settings = settings

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.settings.ca_file:
            ctx.load_verify_locations(cafile=self.settings.ca_file)
        return ctx

    def send(self, subject: str, body: str) -> None:
        s = self.settings
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = s.sender
        msg["To"] = ", ".join(s.to)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="wms.local")
        msg.set_content(redact(body))
        try:
            if s.security == "ssl":
                client = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._context())
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            with client:
                client.ehlo()
                if s.security == "starttls":
                    if not client.has_extn("starttls"):
                        raise AlertError(f"The mail server {s.where} does not offer STARTTLS; "
                                         "set WMS_SMTP_SECURITY=ssl (port 465) or none.")
                    client.starttls(context=self._context())
                    client.ehlo()
                if s.user:
                    client.login(s.user, s.password or "")
                client.send_message(msg)
        except AlertError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise AlertError(f"The mail server {s.where} refused the login for {s.user!r}: "
                             f"{_smtp_text(exc)}. Check WMS_SMTP_USER and WMS_SMTP_PASSWORD.") from None
        except ssl.SSLError as exc:
            raise AlertError(f"TLS with the mail server {s.where} failed: {exc.reason or exc}. "
                             "Check WMS_SMTP_SECURITY (starttls for port 587, ssl for port 465).") from None
        except smtplib.SMTPException as exc:
            raise AlertError(f"The mail server {s.where} refused the alert: {_smtp_text(exc)}") from None
        except (OSError, socket.timeout) as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise AlertError(f"Cannot reach the mail server {s.where}: {reason}. "
                             "Check WMS_SMTP_HOST and WMS_SMTP_PORT.") from None


def _smtp_text(exc: smtplib.SMTPException) -> str:
    err = getattr(exc, "smtp_error", None)
    if isinstance(err, bytes):
        err = err.decode("utf-8", "replace")
    code = getattr(exc, "smtp_code", None)
    return redact(f"{code} {err}" if code else str(err or exc))


class AlertLedger:
    """The incidents already emailed, persisted as JSON (key -> time sent)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.sent: dict[str, float] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                if isinstance(data, dict) and isinstance(data.get("sent"), dict):
                    self.sent = {str(k): float(v) for k, v in data["sent"].items()}
            except (OSError, ValueError, TypeError):
                self.sent = {}  # unreadable: start over rather than stop alerting

    def __contains__(self, key: str) -> bool:
        return key in self.sent

    def mark(self, key: str, now: float) -> None:
        self.sent[key] = now
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"sent": self.sent}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


DIGEST_OVER = 5


def deliver(incidents: list[Incident], ledger: AlertLedger, mailer: Mailer | None, now: float | None = None
            ) -> tuple[list[Incident], AlertError | None]:
    """Email the incidents not yet in ``ledger``: one email each, or one digest when more than
    DIGEST_OVER are new at once. Returns (sent, error); unsent incidents stay unrecorded."""
    now = now if now is not None else time.time()
    new = [i for i in incidents if i.key not in ledger]
    if not new or mailer is None:
        return [], None
    batches = [[i] for i in new] if len(new) <= DIGEST_OVER else [new]
    sent: list[Incident] = []
    for batch in batches:
        if len(batch) == 1:
            subject, body = batch[0].subject, batch[0].body
        else:
            subject = f"[wms] {len(batch)} new incidents on the board"
            body = "\n\n".join(f"- {i.subject}\n{i.body}" for i in batch)
        try:
            mailer.send(subject, body)
        except AlertError as exc:
            return sent, exc
        for i in batch:
            ledger.mark(i.key, now)
        sent.extend(batch)
    return sent, None
