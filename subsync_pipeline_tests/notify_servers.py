"""Real servers for the notification tests: an SMTP server that demands STARTTLS and a login
(aiosmtpd, with a throwaway self-signed certificate), and an HTTP server that takes webhook
posts the way Teams' and Slack's do. What they receive is kept byte for byte."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from subsync_pipeline_tests.certificates import make_certificate
from subsync_pipeline_tests.pg_server import free_port

SMTP_USER = "subsync-relay"
SMTP_PASSWORD = "Relay-Pass-7731"


def self_signed(folder: Path) -> ssl.SSLContext:
    """A server TLS context for 127.0.0.1 with a certificate made for this test run."""
    certificate = make_certificate(folder, "smtp")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate.pem)
    return context


@dataclass
class Mail:
    raw: bytes
    mail_from: str
    rcpt_tos: list[str]
    authenticated: bool
    tls: bool

    @property
    def message(self) -> EmailMessage:
        message = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        return message

    @property
    def subject(self) -> str:
        return str(self.message["subject"])

    @property
    def text(self) -> str:
        """The plain-text body, decoded from its transfer encoding."""
        part = self.message.get_body(preferencelist=("plain",))
        assert isinstance(part, EmailMessage)
        return str(part.get_content())


@dataclass
class SmtpServer:
    port: int
    received: list[Mail] = field(default_factory=list)

    def url(self, to: str = "ops@example.org") -> str:
        """The Apprise URL of this server: STARTTLS on a custom port, a login, our self-signed
        certificate accepted (verify=no) as a relay with its own CA would be."""
        return (
            f"mailtos://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{self.port}"
            f"?mode=starttls&verify=no&from=subsync@example.org&to={to}"
        )


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        self.server.received.append(
            Mail(
                raw=content if isinstance(content, bytes) else str(content).encode(),
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                authenticated=bool(session.authenticated),
                tls=session.ssl is not None,
            )
        )
        return "250 OK"


def _login(smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> Any:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == SMTP_USER.encode()
        and data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok)


@contextmanager
def smtp_server(folder: Path) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 that takes mail only after STARTTLS and a login."""
    server = SmtpServer(free_port())
    controller = Controller(
        _Handler(server),
        hostname="127.0.0.1",
        port=server.port,
        tls_context=self_signed(folder),
        require_starttls=True,
        authenticator=_login,
        auth_required=True,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@dataclass
class Post:
    path: str
    content_type: str
    body: bytes


@dataclass
class WebhookServer:
    port: int
    received: list[Post] = field(default_factory=list)

    def url(self, path: str = "hook") -> str:
        """Apprise's generic JSON webhook: a POST of {title, message, type, ...}, as Teams' and
        Slack's webhooks take JSON posts (their own schemes point at Microsoft's and Slack's
        hosts, which a test cannot stand in for)."""
        return f"json://127.0.0.1:{self.port}/{path}"


@contextmanager
def webhook_server(port: int | None = None) -> Iterator[WebhookServer]:
    """An HTTP server on 127.0.0.1 that answers 200 to every POST and keeps it."""
    server = WebhookServer(port or free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            server.received.append(Post(self.path, self.headers.get("Content-Type", ""), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: pytest shows what the assertions need."""

    http = ThreadingHTTPServer(("127.0.0.1", server.port), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        http.shutdown()
        http.server_close()
