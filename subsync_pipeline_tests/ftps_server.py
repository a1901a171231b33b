"""A real FTPS server for the tests, shaped like Real Magnet's Simple Data Transfer: pyftpdlib's
TLS_FTPHandler with a throwaway self-signed certificate, explicit TLS required on the control and
data connections, TLS 1.2 only, passive mode, on a free port, in a thread.

Faults a real network has are switched on per test: a data connection cut after some bytes, a
server without MLSD, a file the server refuses, a passive port that nothing answers on.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from OpenSSL import SSL
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer

from subsync_pipeline_tests.certificates import Certificate

USER = "rm_tracking"
PASSWORD = "Xy9-ftps-Secret-2207"
# Commands that would change the server; subsync must never send one.
WRITING_COMMANDS = {"DELE", "RNFR", "RNTO", "STOR", "STOU", "APPE", "MKD", "RMD", "SITE", "MFMT"}


@dataclass
class Faults:
    """Switched on by a test; read by the handlers on the server's thread."""

    cut_after: dict[str, int] = field(default_factory=dict)  # name -> bytes, once
    refuse: set[str] = field(default_factory=set)
    no_mlsd: bool = False
    dead_passive_port: int | None = None
    commands: list[str] = field(default_factory=list)


class _DataHandler(TLS_DTPHandler):
    faults: ClassVar[Faults]

    def send(self, data: Any) -> int:
        sent: int = super().send(data)
        name = Path(self.file_obj.name).name if self.file_obj is not None else ""
        limit = self.faults.cut_after.get(name)
        if limit is not None and self.tot_bytes_sent >= limit:
            del self.faults.cut_after[name]
            self._resp = ("426 Connection closed; transfer aborted.", lambda *_: None)
            self.close()
        return sent


class _Handler(TLS_FTPHandler):
    faults: ClassVar[Faults]

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        self.faults.commands.append(cmd)
        if cmd == "MLSD" and self.faults.no_mlsd:
            self.respond('500 Command "MLSD" not understood.')
            return
        if cmd == "RETR" and Path(str(args[0])).name in self.faults.refuse:
            self.respond("550 Permission denied.")
            return
        if cmd == "PASV" and self.faults.dead_passive_port is not None:
            port = self.faults.dead_passive_port
            self.respond(f"227 Entering passive mode (127,0,0,1,{port >> 8},{port & 0xFF}).")
            return
        super().process_command(cmd, *args, **kwargs)


def _tls12_context(pem: Path) -> SSL.Context:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)
    context.use_certificate_chain_file(str(pem))
    context.use_privatekey_file(str(pem))
    return context


class FTPSServer:
    """The server on 127.0.0.1; `root / folder` is Real Magnet's `Tracking` folder."""

    def __init__(self, root: Path, certificate: Certificate, folder: str = "Tracking") -> None:
        self.root = root
        self.folder = root / folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.faults = Faults()
        authorizer = DummyAuthorizer()
        # Full rights, as a real account may have: the tests check nothing is ever changed.
        authorizer.add_user(USER, PASSWORD, str(root), perm="elradfmwMT")
        faults = self.faults
        handler = type("Handler", (_Handler,), {"faults": faults})
        handler.dtp_handler = type("DataHandler", (_DataHandler,), {"faults": faults})
        handler.authorizer = authorizer
        handler.ssl_context = _tls12_context(certificate.pem)
        handler.tls_control_required = True
        handler.tls_data_required = True
        handler.banner = "Simple Data Transfer (test)"
        self._server = FTPServer(("127.0.0.1", 0), handler)
        self.port: int = self._server.address[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._server.ioloop.loop(timeout=0.05, blocking=False)
        self._server.close_all()

    def start(self) -> FTPSServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def put(self, name: str, content: bytes, modified: datetime | None = None) -> Path:
        """A file in the Tracking folder, modified at `modified` (UTC) if given."""
        path = self.folder / name
        path.write_bytes(content)
        if modified is not None:
            stamp = modified.replace(tzinfo=UTC).timestamp()
            os.utime(path, (stamp, stamp))
        return path

    def snapshot(self) -> dict[str, tuple[int, int, str]]:
        """Every file under the root with its size, mtime and hash: to show nothing changed."""
        return {
            str(path.relative_to(self.root)): (
                path.stat().st_size,
                path.stat().st_mtime_ns,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
            for path in sorted(self.root.rglob("*"))
            if path.is_file()
        }
