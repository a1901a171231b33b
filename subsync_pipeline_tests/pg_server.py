"""A throwaway PostgreSQL server for the tests: real initdb/pg_ctl, a free port, removed after.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
`postgres` OS user.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from itertools import count
from pathlib import Path

import psycopg
from psycopg import sql

INSTALL_HINT = "install PostgreSQL 15 (apt-get install -y postgresql)"
# PostgreSQL truncates identifiers at 63 bytes; a short stem leaves room for the unique suffix.
_STEM_LENGTH = 40
_database_numbers = count(1)


class PostgresUnavailable(RuntimeError):
    """No server can run here: the binaries, or (as root) the postgres OS user, are missing."""


class PostgresStartupError(RuntimeError):
    """initdb or pg_ctl failed; the message carries their output and the server log."""


def _major_version(bin_dir: str) -> int:
    version = Path(bin_dir).parent.name
    return int(version) if version.isdigit() else -1


def find_binaries() -> tuple[str, str]:
    """initdb and pg_ctl of one installation: PATH first, then the newest Debian-style install."""
    initdb = shutil.which("initdb")
    if initdb is None:
        bin_dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major_version)
        candidates = [f"{d}/initdb" for d in bin_dirs if os.access(f"{d}/initdb", os.X_OK)]
        if not candidates:
            raise PostgresUnavailable(
                f"initdb not found on PATH or in /usr/lib/postgresql: {INSTALL_HINT}"
            )
        initdb = candidates[-1]
    # pg_ctl must come from the same installation as initdb: mixing majors cannot start a cluster.
    beside = Path(os.path.realpath(initdb)).with_name("pg_ctl")
    pg_ctl = str(beside) if os.access(beside, os.X_OK) else shutil.which("pg_ctl")
    if pg_ctl is None:
        raise PostgresUnavailable(f"pg_ctl not found next to {initdb} nor on PATH: {INSTALL_HINT}")
    return initdb, pg_ctl


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_stem(name: str) -> str:
    """A lower-case identifier that is also safe in the path of a URL, whatever a test is called."""
    stem = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")[:_STEM_LENGTH]
    return stem or "test"


class PostgresServer:
    """One server for the whole test session; each test gets fresh databases on it.

    With `directory`, the cluster lives there and outlives `stop` (the bench keeps a loaded
    history that way); a directory that holds a cluster already is started, not initialised.
    """

    def __init__(self, directory: Path | None = None, *, icu_locale: str | None = None) -> None:
        self.initdb, self.pg_ctl = find_binaries()
        # A cluster whose default collation is ICU's for this locale, as production clusters
        # initialised with en_US.UTF-8 sort text: not by code point.
        self.icu_locale = icu_locale
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root needs the postgres OS user to run the server: {INSTALL_HINT}"
                ) from None
        self.port = free_port()
        self.keep = directory is not None
        if directory is None:
            # Under /tmp, not $TMPDIR: the postgres user must be able to reach it as root.
            directory = Path(tempfile.mkdtemp(prefix="subsync-pg-", dir="/tmp"))
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        if self.as_root:
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        self.log = self.directory / "log"

    def _run(self, *args: str) -> None:
        command = list(args)
        if self.as_root:
            runuser = shutil.which("runuser")
            command = (
                [runuser, "-u", "postgres", "--", *command]
                if runuser
                else ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
            )
        # cwd: the postgres user may not be allowed into the directory pytest runs from.
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, cwd=self.directory
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
            raise PostgresStartupError(
                f"{shlex.join(command)} exited with {result.returncode}\n"
                f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}--- server log\n{log}"
            )

    def start(self) -> None:
        """initdb (unless the directory holds a cluster) and start; on failure a throwaway
        directory is removed and the error carries the log."""
        try:
            if not (self.directory / "PG_VERSION").exists():
                self._run(
                    self.initdb,
                    "-D",
                    str(self.directory),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    # The C locales exist everywhere; the caller's LANG may name one not generated.
                    *(
                        [
                            "--locale-provider=icu",
                            f"--icu-locale={self.icu_locale}",
                            "--locale=C.UTF-8",
                        ]
                        if self.icu_locale
                        else ["--locale=C"]
                    ),
                    "--no-sync",
                )
            options = (
                f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c max_connections=100"
            )
            self._run(
                self.pg_ctl,
                "-D",
                str(self.directory),
                "-l",
                str(self.log),
                "-w",
                "-o",
                options,
                "start",
            )
        except PostgresStartupError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server; a kept cluster is shut down cleanly, a throwaway one removed."""
        try:
            if (self.directory / "postmaster.pid").exists():
                mode = "fast" if self.keep else "immediate"
                self._run(self.pg_ctl, "-D", str(self.directory), "-m", mode, "-w", "stop")
        finally:
            if not self.keep:
                shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str, owner: str | None = None) -> str:
        """A new empty database named after `name` (made unique) and its SQLAlchemy URL.

        With `owner`, that role owns it (and so its public schema) and the URL has no user: the
        caller adds the role and its password.
        """
        unique = f"{database_stem(name)}_{next(_database_numbers)}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(unique))
        if owner:
            statement += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        # CREATE DATABASE cannot run inside a transaction block, hence autocommit.
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(statement)
        if owner:
            return f"postgresql+psycopg://127.0.0.1:{self.port}/{unique}"
        return self.url(unique)

    def add_password_role(self, role: str, password: str) -> None:
        """A login role that must give `password` over TCP (every other role stays on trust)."""
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
            hba = self.directory / "pg_hba.conf"
            rule = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
            hba.write_text(rule + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")
