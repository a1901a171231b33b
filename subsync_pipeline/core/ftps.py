"""Real Magnet's Simple Data Transfer: an FTPS server (explicit TLS on port 21, or implicit on
990), TLS 1.2 or later, passive mode, and a locally signed certificate that the client pins.

Built on the standard library's `ftplib.FTP_TLS`: the FTP libraries on PyPI add path helpers on
top of it, not what this needs (a pinned certificate on every connection, the control
connection's TLS session reused on data connections, implicit TLS, errors that name the fix).
Read-only by construction: only LIST/MLSD, SIZE, MDTM and RETR are ever sent.
"""

from __future__ import annotations

import ftplib
import hashlib
import os
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

EXPLICIT = "explicit"
IMPLICIT = "implicit"
DEFAULT_PORTS = {EXPLICIT: 21, IMPLICIT: 990}
_BLOCK = 1 << 16
_HEX_FINGERPRINT = re.compile(r"^[0-9A-F]{64}$")

T = TypeVar("T")


@dataclass(frozen=True)
class FTPSSettings:
    host: str
    user: str
    password: str = field(repr=False)
    port: int = 0  # 0: the TLS mode's usual port
    folder: str = "Tracking"
    tls: str = EXPLICIT
    fingerprint: str = ""  # SHA-256 of the server's certificate (hex, colons optional)
    ca_file: str = ""
    timeout: float = 30.0
    attempts: int = 3
    backoff: float = 2.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port or DEFAULT_PORTS[self.tls]}"


@dataclass(frozen=True)
class RemoteFile:
    """One file as the server lists it; `modified` is naive UTC (RFC 3659), None if not told."""

    name: str
    size: int
    modified: datetime | None


class FTPSError(Exception):
    """A failure to fetch that an operator must act on; the message names the fix."""


class TransientError(FTPSError):
    """A failure a new connection may not have (retried with backoff)."""


class SettingsError(FTPSError):
    pass


class LoginRefused(FTPSError):
    pass


class CertificateRefused(FTPSError):
    pass


class RemoteFolderMissing(FTPSError):
    pass


class RetrieveRefused(FTPSError):
    """The server refused one file (RETR answered 5xx): the others can still be fetched."""


class PassiveConnectionFailed(TransientError):
    pass


class IncompleteDownload(TransientError):
    pass


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as `openssl x509 -fingerprint -sha256` prints it."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def normalise_fingerprint(text: str) -> str:
    """A pasted fingerprint (with or without colons, openssl's `sha256 Fingerprint=` prefix) in
    `fingerprint`'s form; SettingsError if it is not 32 bytes of hex."""
    value = text.strip().split("=", 1)[-1].replace(":", "").replace(" ", "").upper()
    if not _HEX_FINGERPRINT.match(value):
        raise SettingsError(
            "SUBSYNC_FTPS_FINGERPRINT must be the certificate's SHA-256 fingerprint: 64 hex "
            "digits, colons optional (see docs/operating.md, 'Pinning the certificate')"
        )
    return ":".join(value[i : i + 2] for i in range(0, len(value), 2))


def _context(settings: FTPSSettings) -> ssl.SSLContext:
    if settings.ca_file:
        context = ssl.create_default_context(cafile=settings.ca_file)
    else:
        # No CA signs Real Magnet's certificate: the fingerprint is checked on every
        # connection instead (`_PinnedFTP._check`), and a missing one refuses the server.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _PinnedFTP(ftplib.FTP_TLS):
    """FTP_TLS with the certificate pinned on the control and every data connection, data
    connections resuming the control connection's TLS session (servers such as vsftpd and
    FileZilla Server refuse others), and implicit TLS."""

    def __init__(self, settings: FTPSSettings) -> None:
        super().__init__(context=_context(settings), timeout=settings.timeout)
        self._settings = settings
        self._expected = normalise_fingerprint(settings.fingerprint) if settings.fingerprint else ""

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        if self._settings.tls == EXPLICIT:
            return super().connect(host, port)
        self.host, self.port = host, port
        raw = socket.create_connection((host, port), self.timeout)
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self._check(self.sock)
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def auth(self) -> str:
        response = super().auth()
        self._check(self.sock)
        return response

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        host, port = self.makepasv()
        try:
            conn = socket.create_connection((host, port), self.timeout)
        except OSError as error:
            raise PassiveConnectionFailed(
                f"the passive data connection to {host}:{port} failed ({error}): a firewall "
                f"between this machine and {self._settings.host} must let it connect out to the "
                "server's passive port range, and this machine's public IP must be on Real "
                "Magnet's allow-list"
            ) from error
        try:
            if rest is not None:
                self.sendcmd(f"REST {rest}")
            response = self.sendcmd(cmd)
            if response[0] == "2":
                response = self.getresp()
            if response[0] != "1":
                raise ftplib.error_reply(response)
            # The session sets PROT P before any transfer: every data connection is TLS.
            assert isinstance(self.sock, ssl.SSLSocket)
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
            self._check(conn)
        except BaseException:
            conn.close()
            raise
        return conn, ftplib.parse150(response) if response[:3] == "150" else None

    def _check(self, conn: socket.socket | None) -> None:
        if self._settings.ca_file:
            return
        assert isinstance(conn, ssl.SSLSocket)
        der = conn.getpeercert(binary_form=True) or b""
        seen = fingerprint(der)
        if not self._expected:
            raise CertificateRefused(
                f"no certificate is pinned for {self._settings.host}, so it is not trusted. It "
                f"presented SHA-256 {seen}: confirm that with Real Magnet, then set "
                "SUBSYNC_FTPS_FINGERPRINT to it (or SUBSYNC_FTPS_CA_FILE to a CA that signs it)"
            )
        if seen != self._expected:
            raise CertificateRefused(
                f"the certificate of {self._settings.host} does not match the pinned one: seen "
                f"SHA-256 {seen}, expected {self._expected} (SUBSYNC_FTPS_FINGERPRINT). If Real "
                "Magnet renewed its certificate, confirm the new fingerprint with them and pin "
                "it; otherwise something is between this machine and the server"
            )


def _parse_modified(value: str | None) -> datetime | None:
    """RFC 3659 time-val (YYYYMMDDHHMMSS[.sss], UTC) as naive UTC, None when absent or odd."""
    if not value:
        return None
    try:
        return datetime.strptime(value[:14], "%Y%m%d%H%M%S")
    except ValueError:
        return None


class FTPSSession:
    """One logged-in connection, in the remote folder."""

    def __init__(self, settings: FTPSSettings) -> None:
        self.settings = settings
        self.ftp = _PinnedFTP(settings)
        port = settings.port or DEFAULT_PORTS[settings.tls]
        try:
            self.ftp.connect(settings.host, port)
            self.ftp.login(settings.user, settings.password)
        except ftplib.error_perm as error:
            self.close()
            reply = str(error).replace(settings.password, "***") if settings.password else error
            raise LoginRefused(
                f"{settings.host} refused the login of user '{settings.user}' ({reply}): check "
                "SUBSYNC_FTPS_USER and SUBSYNC_FTPS_PASSWORD against the Simple Data Transfer "
                "credentials, and that this machine's public IP is on Real Magnet's allow-list"
            ) from None
        except ssl.SSLCertVerificationError as error:
            self.close()
            raise CertificateRefused(
                f"the certificate of {settings.host} is not trusted by SUBSYNC_FTPS_CA_FILE "
                f"({error.verify_message}): give the CA that signs it, or pin its fingerprint "
                "with SUBSYNC_FTPS_FINGERPRINT instead"
            ) from None
        except BaseException:
            self.close()
            raise
        try:
            self.ftp.prot_p()
            self.ftp.cwd(settings.folder)
        except ftplib.error_perm as error:
            self.close()
            raise RemoteFolderMissing(
                f"the folder '{settings.folder}' is not on {settings.host} ({error}): check "
                "SUBSYNC_FTPS_FOLDER, and ask Real Magnet to deliver tracking logs through "
                "Simple Data Transfer"
            ) from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            self.ftp.quit()
        except (OSError, EOFError, ftplib.Error):
            self.ftp.close()

    def listing(self) -> list[RemoteFile]:
        """The folder's files: MLSD where the server has it, else NLST with SIZE and MDTM."""
        try:
            entries = list(self.ftp.mlsd(facts=["type", "size", "modify"]))
        except ftplib.error_perm:
            return self._list_without_mlsd()
        return [
            RemoteFile(name, int(facts["size"]), _parse_modified(facts.get("modify")))
            for name, facts in entries
            if facts.get("type", "file") == "file" and "size" in facts
        ]

    def _list_without_mlsd(self) -> list[RemoteFile]:
        names = self.ftp.nlst()
        self.ftp.voidcmd("TYPE I")  # NLST left ASCII mode, where many servers refuse SIZE
        files = []
        for name in names:
            name = name.rsplit("/", 1)[-1]
            try:
                size = self.ftp.size(name)
            except ftplib.error_perm:  # a folder, or gone since the listing
                continue
            try:
                modified = _parse_modified(self.ftp.voidcmd(f"MDTM {name}")[4:].strip())
            except ftplib.error_perm:
                modified = None
            if size is not None:
                files.append(RemoteFile(name, size, modified))
        return files

    def download(self, remote: RemoteFile, target: Path) -> str:
        """Fetch `remote` to `target` through a hidden `.part` file, renamed once its size is the
        listed one; returns its SHA-256. Nothing is left at `target` or `.part` on failure."""
        part = target.with_name(f".{target.name}.part")
        digest = hashlib.sha256()
        try:
            with part.open("wb") as handle:

                def write(block: bytes) -> None:
                    handle.write(block)
                    digest.update(block)

                try:
                    self.ftp.retrbinary(f"RETR {remote.name}", write, blocksize=_BLOCK)
                except ftplib.error_perm as error:
                    raise RetrieveRefused(
                        f"{remote.name}: the server refused it ({error})"
                    ) from None
                handle.flush()
                os.fsync(handle.fileno())
            size = part.stat().st_size
            if size != remote.size:
                raise IncompleteDownload(
                    f"{remote.name}: received {size} of {remote.size} bytes (the connection "
                    "dropped, or the file changed while it was read)"
                )
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        return digest.hexdigest()


# What a new connection may not run into again: network errors (OSError covers timeouts,
# resets, refusals and TLS errors), a reply cut short, and the server's 4xx replies.
_TRANSIENT = (TransientError, OSError, EOFError, ftplib.error_temp, ftplib.error_reply)


class FTPSClient:
    """Connects on first use; retries an action on a new connection after a transient error,
    waiting `backoff`, then twice that, and so on."""

    def __init__(self, settings: FTPSSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._session: FTPSSession | None = None

    def __enter__(self) -> FTPSClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def listing(self) -> list[RemoteFile]:
        return self._retrying(lambda session: session.listing())

    def download(self, remote: RemoteFile, target: Path) -> str:
        return self._retrying(lambda session: session.download(remote, target))

    def _retrying(self, action: Callable[[FTPSSession], T]) -> T:
        attempts = max(1, self.settings.attempts)
        for attempt in range(1, attempts + 1):
            try:
                if self._session is None:
                    self._session = FTPSSession(self.settings)
                return action(self._session)
            except _TRANSIENT as error:
                self._drop()
                if attempt == attempts:
                    raise self._explained(error, attempts) from None
                self._sleep(self.settings.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._session is not None:
            self._session.ftp.close()
            self._session = None

    def _explained(self, error: BaseException, attempts: int) -> FTPSError:
        where = f"Real Magnet's FTPS server {self.settings.address}"
        if isinstance(error, FTPSError):
            text = str(error)
        elif isinstance(error, TimeoutError):
            text = (
                f"{where} did not answer within {self.settings.timeout:g} s: check "
                "SUBSYNC_FTPS_HOST and SUBSYNC_FTPS_PORT, the firewall, and that this machine's "
                "public IP is on Real Magnet's allow-list (a connection that hangs is usually "
                "the allow-list)"
            )
        else:
            text = f"{where}: {type(error).__name__}: {error}"
        message = f"{text} (gave up after {attempts} attempt(s))"
        return type(error)(message) if isinstance(error, FTPSError) else TransientError(message)
