"""Real Magnet's Simple Data Transfer (FTPS) server, where the tracking logs are delivered."""

import os

import dagster as dg
from pydantic import Field

from subsync_pipeline.core.ftps import DEFAULT_PORTS, EXPLICIT, FTPSClient, FTPSSettings

HOST = "SUBSYNC_FTPS_HOST"


class RealMagnetFTPSResource(dg.ConfigurableResource):
    """The FTPS server and login; an empty host means files are dropped into the landing folder
    by hand instead. The certificate is pinned by SHA-256 fingerprint or checked against a CA
    file: a server that matches neither is refused."""

    host: str = Field(default="", description=f"{HOST}; empty: not fetching")
    port: int = Field(default=0, description="SUBSYNC_FTPS_PORT; 0: 21 explicit, 990 implicit")
    user: str = Field(default="", description="SUBSYNC_FTPS_USER")
    password: str = Field(default="", description="SUBSYNC_FTPS_PASSWORD")
    folder: str = Field(default="Tracking", description="SUBSYNC_FTPS_FOLDER")
    tls: str = Field(default=EXPLICIT, description="SUBSYNC_FTPS_TLS: explicit or implicit")
    fingerprint: str = Field(default="", description="SUBSYNC_FTPS_FINGERPRINT (SHA-256)")
    ca_file: str = Field(default="", description="SUBSYNC_FTPS_CA_FILE")
    timeout_seconds: float = 30.0
    attempts: int = 3
    backoff_seconds: float = 2.0

    @property
    def configured(self) -> bool:
        return bool(self.host)

    def client(self) -> FTPSClient:
        if self.tls not in DEFAULT_PORTS:
            raise dg.Failure(f"SUBSYNC_FTPS_TLS must be 'explicit' or 'implicit', not {self.tls!r}")
        return FTPSClient(
            FTPSSettings(
                host=self.host,
                user=self.user,
                password=self.password,
                port=self.port,
                folder=self.folder,
                tls=self.tls,
                fingerprint=self.fingerprint,
                ca_file=self.ca_file,
                timeout=self.timeout_seconds,
                attempts=self.attempts,
                backoff=self.backoff_seconds,
            )
        )


def _env(name: str, default: str = "") -> str | dg.EnvVar:
    """EnvVar (resolved when used, hidden in the UI) when set, else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def ftps_from_environment() -> RealMagnetFTPSResource:
    """The resource from the SUBSYNC_FTPS_* variables; unset, a resource that is not configured."""
    return RealMagnetFTPSResource(
        host=_env(HOST),
        port=dg.EnvVar.int("SUBSYNC_FTPS_PORT") if os.environ.get("SUBSYNC_FTPS_PORT") else 0,
        user=_env("SUBSYNC_FTPS_USER"),
        password=_env("SUBSYNC_FTPS_PASSWORD"),
        folder=_env("SUBSYNC_FTPS_FOLDER", "Tracking"),
        tls=_env("SUBSYNC_FTPS_TLS", EXPLICIT),
        fingerprint=_env("SUBSYNC_FTPS_FINGERPRINT"),
        ca_file=_env("SUBSYNC_FTPS_CA_FILE"),
    )
