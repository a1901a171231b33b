"""Dagster's own processes (webserver, daemon, `dagster dev`) for the end-to-end tests.

Each runs in a session of its own with its output in a log file, and `stop` ends the whole
process group, so code servers and run workers the services started cannot outlive a test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKSPACE = str(ROOT / "workspace.yaml")
STOP_SECONDS = 30
# The machine is slow and shared: loading the code location takes tens of seconds.
STARTUP_SECONDS = 180
LOCATION_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


class Services:
    """Processes started from the repository root with one environment; logs under `logs`."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *command: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                list(command),
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        """SIGTERM every group, give the services time to shut down, then SIGKILL what is left
        and wait until it is gone.

        Dagster maps SIGTERM to its SIGINT handler, so a service started with SIGINT ignored (a
        background job of a non-interactive shell) only ends at the SIGKILL.
        """
        for process in self.processes:
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        deadline = time.monotonic() + STOP_SECONDS
        while any(group_alive(p.pid) for p in self.processes) and time.monotonic() < deadline:
            time.sleep(0.2)

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}"
            for path in sorted(self.logs.iterdir())
        )


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still there (signal 0 only checks)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def graphql(port: int, query: str, path_prefix: str = "") -> dict[str, Any]:
    """POST `query` to a webserver on loopback (started with `--path-prefix path_prefix`)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path_prefix}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def wait_until_loaded(port: int, services: Services, path_prefix: str = "") -> None:
    """Until the webserver answers and the subsync code location has loaded."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in services.processes):
            pytest.fail(f"a Dagster service exited:\n{services.log_tail()}", pytrace=False)
        try:
            data = graphql(port, LOCATION_QUERY, path_prefix)
            entries = data["data"]["workspaceOrError"]["locationEntries"]
        except (OSError, urllib.error.URLError, KeyError, TypeError):
            entries = []
        for entry in entries:
            loaded = entry["locationOrLoadError"]
            if loaded and loaded["__typename"] == "PythonError":
                pytest.fail(f"the code location failed to load: {loaded['message']}")
            if entry["loadStatus"] == "LOADED" and loaded:
                return
        time.sleep(1)
    pytest.fail(f"webserver not ready in {STARTUP_SECONDS}s:\n{services.log_tail()}")
