"""Who may do what (docs/access.md), on the demo's Dagster instance.

The steward face is `dagster-webserver --read-only --path-prefix /steward`, the engineer face the
full webserver under /engineer, both on loopback. Over GraphQL the steward face reads assets and
runs and refuses every change. nginx, started from deploy/nginx with a throwaway prefix, port,
self-signed certificate and htpasswd files, stands in front of both and of the reports folder:
a login on every path, the engineer face for engineers only, the rejects CSV for stewards only,
and the report links in Dagster's metadata lead to the report through it.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from subsync_pipeline_tests.dagster_services import (
    BIN,
    ROOT,
    WORKSPACE,
    Services,
    graphql,
    wait_until_loaded,
)
from subsync_pipeline_tests.pg_server import free_port
from subsync_pipeline_tests.test_defs import SPEC_ASSETS

pytestmark = pytest.mark.slow

NGINX_CONF = ROOT / "deploy" / "nginx"
STEWARD = ("steward", "Steward-pass-4417")
ENGINEER = ("engineer", "Engineer-pass-9023")
DEMO_RUNS = 3
EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
PLACEHOLDER = re.compile(r"@[A-Z_]+@")
NGINX_START_SECONDS = 30

SENSOR = (
    '{repositoryLocationName: "subsync", repositoryName: "__repository__", '
    'sensorName: "tracking_upload_sensor"}'
)
READ_ASSETS = "{ assetNodes { assetKey { path } } }"
READ_RUNS = "{ runsOrError { ... on Runs { results { runId status } } } }"
READ_SENSOR = (
    "{ sensorOrError(sensorSelector: SENSOR) { ... on Sensor { sensorState { status } } } }"
).replace("SENSOR", SENSOR)
READ_BACKFILLS = "{ partitionBackfillsOrError { ... on PartitionBackfills { results { id } } } }"
REPORT_LINK = """{ assetOrError(assetKey: {path: ["data_quality_report"]}) { ... on Asset {
  assetMaterializations(limit: 1) { partition metadataEntries { label
    ... on UrlMetadataEntry { url } } } } } }"""
# Each change a steward must not make: a run, a backfill, a sensor switched on, an asset wiped;
# $DAY is the partition.
CHANGES = {
    "launchRun": """mutation { launchRun(executionParams: {
      selector: {repositoryLocationName: "subsync", repositoryName: "__repository__",
                 jobName: "daily_sync_job"},
      executionMetadata: {tags: [{key: "dagster/partition", value: "$DAY"}]} })
      { __typename } }""",
    "launchPartitionBackfill": """mutation { launchPartitionBackfill(backfillParams: {
      assetSelection: [{path: ["raw_tracking_log"]}], partitionNames: ["$DAY"]})
      { __typename } }""",
    "startSensor": "mutation { startSensor(sensorSelector: SENSOR) { __typename } }".replace(
        "SENSOR", SENSOR
    ),
    "wipeAssets": """mutation { wipeAssets(assetPartitionRanges: [
      {assetKey: {path: ["raw_tracking_log"]}}]) { __typename } }""",
}


def change(name: str, day: str) -> str:
    return CHANGES[name].replace("$DAY", day)


@dataclass
class Faces:
    """The two webservers on the demo's instance, and where nginx is to publish its reports."""

    reports: Path
    days: list[str]
    steward_port: int
    engineer_port: int
    https_port: int
    reports_base_url: str


def _require(tool: str) -> str:
    """A system tool the test needs: missing, it skips on a laptop and fails under CI."""
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if found:
        return found
    message = f"{tool} not found: apt-get install -y {tool}"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and the access tests need {tool}: {message}", pytrace=False)
    pytest.skip(message)


def _cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "subsync_pipeline.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faces]:
    """The demo (three days run on a throwaway DAGSTER_HOME) with `reports_base_url` set to where
    nginx will publish the reports, then both webservers on it."""
    root = tmp_path_factory.mktemp("access")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {name: value for name, value in os.environ.items() if name != "SUBSYNC_CONFIG"}
    env.update(
        PERSONIFY_DB_URL=f"sqlite:///{root / 'personify.db'}",
        SUBSYNC_DB_URL=f"sqlite:///{root / 'state.db'}",
        SUBSYNC_LANDING_DIR=str(root / "landing"),
        SUBSYNC_REPORTS_DIR=str(root / "reports"),
        DAGSTER_HOME=str(home),
    )
    https_port = free_port()
    reports_base_url = f"https://127.0.0.1:{https_port}/steward/reports"
    # The sandbox writes the demo config; the demo keeps it and runs the days with the link set.
    _cli(env, root, "sandbox")
    config = root / "data" / "subsync.yaml"
    with config.open("a", encoding="utf-8") as handle:
        handle.write(f"reports_base_url: {reports_base_url}\n")
    demo = _cli(env, root, "demo")
    days = re.findall(r"daily_sync_job (\d{4}-\d{2}-\d{2}): success", demo)
    assert len(days) == DEMO_RUNS, demo
    env["SUBSYNC_CONFIG"] = str(config)

    services = Services(env, root / "logs")
    steward_port, engineer_port = free_port(), free_port()
    faces = Faces(root / "reports", days, steward_port, engineer_port, https_port, reports_base_url)
    webserver = [str(BIN / "dagster-webserver"), "-w", WORKSPACE, "-h", "127.0.0.1"]
    try:
        services.start(
            "steward",
            *webserver,
            *("-p", str(steward_port), "--path-prefix", "/steward", "--read-only"),
        )
        services.start(
            "engineer", *webserver, *("-p", str(engineer_port), "--path-prefix", "/engineer")
        )
        wait_until_loaded(steward_port, services, "/steward")
        wait_until_loaded(engineer_port, services, "/engineer")
        yield faces
    finally:
        services.stop()


def test_the_read_only_face_reads_assets_and_runs_and_refuses_every_change(
    faces: Faces,
) -> None:
    def steward(query: str) -> dict[str, Any]:
        return graphql(faces.steward_port, query, "/steward")

    def engineer(query: str) -> dict[str, Any]:
        return graphql(faces.engineer_port, query, "/engineer")

    assets = steward(READ_ASSETS)["data"]["assetNodes"]
    assert {"/".join(node["assetKey"]["path"]) for node in assets} == SPEC_ASSETS
    runs = steward(READ_RUNS)["data"]["runsOrError"]["results"]
    assert [run["status"] for run in runs] == ["SUCCESS"] * DEMO_RUNS

    day = faces.days[-1]
    refused = {name: steward(change(name, day))["data"][name] for name in CHANGES}
    assert {name: answer["__typename"] for name, answer in refused.items()} == dict.fromkeys(
        CHANGES, "UnauthorizedError"
    )
    # Nothing changed behind the refusals.
    assert steward(READ_RUNS)["data"]["runsOrError"]["results"] == runs
    assert steward(READ_BACKFILLS)["data"]["partitionBackfillsOrError"]["results"] == []
    assert steward(READ_SENSOR)["data"]["sensorOrError"]["sensorState"]["status"] == "STOPPED"
    assert {
        "/".join(n["assetKey"]["path"]) for n in steward(READ_ASSETS)["data"]["assetNodes"]
    } == SPEC_ASSETS

    # The same requests pass on the engineer face: the refusal is the read-only flag's. With no
    # daemon running, the run only waits in the queue and the sensor never ticks.
    launched = engineer(change("launchRun", day))["data"]["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    started = engineer(change("startSensor", day))["data"]["startSensor"]
    assert started["__typename"] == "Sensor", started
    assert steward(READ_SENSOR)["data"]["sensorOrError"]["sensorState"]["status"] == "RUNNING"
    assert len(steward(READ_RUNS)["data"]["runsOrError"]["results"]) == DEMO_RUNS + 1


@dataclass
class Proxy:
    """nginx from deploy/nginx, in front of `faces`: the client side of it."""

    https_port: int
    http_port: int
    tls: ssl.SSLContext

    def request(
        self,
        path: str,
        user: tuple[str, str] | None = None,
        *,
        query: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        """GET `path` (POST the GraphQL `query`) over TLS, with `user`'s basic-auth login; the
        answer as it comes, redirects not followed. Its body is read by the caller."""
        sent = dict(headers or {})
        if user:
            sent["Authorization"] = "Basic " + base64.b64encode(":".join(user).encode()).decode()
        body = None
        if query is not None:
            body = json.dumps({"query": query}).encode()
            sent["Content-Type"] = "application/json"
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.https_port, context=self.tls, timeout=30
        )
        connection.request("POST" if body else "GET", path, body, sent)
        return connection.getresponse()

    def read(self, path: str, user: tuple[str, str] | None = None) -> tuple[int, str]:
        response = self.request(path, user)
        return response.status, response.read().decode(errors="replace")

    def graphql(self, path: str, user: tuple[str, str] | None, query: str) -> tuple[int, Any]:
        response = self.request(path, user, query=query)
        body = response.read()
        return response.status, json.loads(body) if response.status == 200 else body


def _openssl(*args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [_require("openssl"), *args], input=stdin, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def render(into: Path, login: str, values: dict[str, str]) -> Path:
    """deploy/nginx copied to `into`, every placeholder filled as an operator's sed would; the
    site file's path."""
    shutil.copytree(NGINX_CONF, into)
    for conf in into.rglob("*.conf"):
        text = conf.read_text(encoding="utf-8")
        for name, value in {"CONF_DIR": str(into), "LOGIN": login, **values}.items():
            text = text.replace(f"@{name}@", value)
        assert not PLACEHOLDER.findall(text), (conf, PLACEHOLDER.findall(text))
        conf.write_text(text, encoding="utf-8")
    return into / "subsync.conf"


def nginx_conf(prefix: Path, site: Path) -> Path:
    """A main config for a throwaway nginx: in the foreground, everything it writes under
    `prefix`, the subsync site included as Debian's nginx.conf includes sites-enabled."""
    # As root, workers would otherwise run as nobody, who cannot read pytest's temp folders.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'};\nevents {{ worker_connections 64; }}\n"
        f"http {{\n    default_type application/octet-stream;\n"
        f"    access_log {prefix / 'access.log'};\n{temp}    include {site};\n}}\n",
        encoding="utf-8",
    )
    return conf


def site_values(prefix: Path, faces: Faces, http_port: int) -> dict[str, str]:
    """Every placeholder of deploy/nginx: TLS with a throwaway self-signed certificate, the two
    faces' webservers, the reports, htpasswd files, and an (unused here) oauth2-proxy."""
    cert, key = prefix / "tls.crt", prefix / "tls.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    hashed = {
        user: _openssl("passwd", "-6", "-stdin", stdin=password).strip()
        for user, password in (STEWARD, ENGINEER)
    }
    stewards, engineers = prefix / "stewards.htpasswd", prefix / "engineers.htpasswd"
    stewards.write_text("".join(f"{user}:{h}\n" for user, h in hashed.items()), encoding="utf-8")
    engineers.write_text(f"{ENGINEER[0]}:{hashed[ENGINEER[0]]}\n", encoding="utf-8")
    return {
        "SERVER_NAME": "127.0.0.1",
        "HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "HTTPS_LISTEN": f"127.0.0.1:{faces.https_port}",
        "HTTPS_PORT": str(faces.https_port),
        "TLS_CERT": str(cert),
        "TLS_KEY": str(key),
        "STEWARD_UPSTREAM": f"127.0.0.1:{faces.steward_port}",
        "ENGINEER_UPSTREAM": f"127.0.0.1:{faces.engineer_port}",
        "REPORTS_DIR": str(faces.reports.resolve()),
        "STEWARDS_HTPASSWD": str(stewards),
        "ENGINEERS_HTPASSWD": str(engineers),
        "OAUTH2_PROXY": "http://127.0.0.1:4180",
        "STEWARD_GROUPS": "subsync-stewards,subsync-engineers",
        "ENGINEER_GROUPS": "subsync-engineers",
    }


@pytest.fixture(scope="module")
def proxy(faces: Faces, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    nginx = _require("nginx")
    prefix = tmp_path_factory.mktemp("nginx")
    http_port = free_port()
    values = site_values(prefix, faces, http_port)
    conf = nginx_conf(prefix, render(prefix / "subsync", "basic", values))
    services = Services(dict(os.environ), prefix / "logs")
    process = services.start(
        "nginx", nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")
    )
    tls = ssl.create_default_context(cafile=values["TLS_CERT"])
    try:
        deadline = time.monotonic() + NGINX_START_SECONDS
        while True:
            try:
                http.client.HTTPSConnection(
                    "127.0.0.1", faces.https_port, context=tls, timeout=5
                ).connect()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"nginx did not start:\n{services.log_tail()}", pytrace=False)
                time.sleep(0.2)
        yield Proxy(faces.https_port, http_port, tls)
    finally:
        services.stop()


def test_nginx_asks_everyone_for_a_login_and_lets_each_role_through_its_face(
    faces: Faces, proxy: Proxy
) -> None:
    day = faces.days[-1]
    rejects = f"/steward/reports/{day}/rejected_rows.csv"
    paths = [
        "/",
        "/steward/",
        "/steward/runs",
        "/steward/reports/",
        f"/steward/reports/{day}/report.html",
        rejects,
        "/engineer/",
        "/engineer/runs",
        "/elsewhere",
    ]
    # Anonymous, or with a wrong password: 401 everywhere, and nothing of what lies behind.
    for user in (None, (STEWARD[0], "wrong"), (ENGINEER[0], STEWARD[1])):
        for path in paths:
            status, body = proxy.read(path, user)
            assert (path, status) == (path, 401), body[:300]
            assert not EMAIL.findall(body), body
        for face in ("/steward/graphql", "/engineer/graphql"):
            assert proxy.graphql(face, user, READ_RUNS)[0] == 401

    # The steward: the read-only UI and the reports, the rejects CSV whole; not the full UI.
    status, page = proxy.read("/steward/", STEWARD)
    assert status == 200 and '__webpack_public_path__ = "/steward"' in page, page[:500]
    status, data = proxy.graphql("/steward/graphql", STEWARD, READ_RUNS)
    assert status == 200 and len(data["data"]["runsOrError"]["results"]) >= DEMO_RUNS
    status, index = proxy.read("/steward/reports/", STEWARD)
    assert status == 200 and all(f'href="{d}/report.html"' in index for d in faces.days)
    response = proxy.request(rejects, STEWARD)
    csv = response.read().decode()
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert "no-store" in response.headers["Cache-Control"]
    assert [e for e in EMAIL.findall(csv) if "***" not in e], "the CSV should hold whole emails"
    assert csv == (faces.reports / day / "rejected_rows.csv").read_text(encoding="utf-8")
    assert proxy.read("/engineer/", STEWARD)[0] == 401
    assert proxy.graphql("/engineer/graphql", STEWARD, READ_RUNS)[0] == 401
    home = proxy.request("/", STEWARD)
    assert (home.status, home.headers["Location"]) == (
        302,
        f"https://127.0.0.1:{proxy.https_port}/steward/",
    )

    # The engineer: both faces; still no rejects CSV through the engineer face.
    for path in ("/steward/", "/steward/reports/", rejects, "/engineer/", "/engineer/runs"):
        assert proxy.read(path, ENGINEER)[0] == 200, path
    status, data = proxy.graphql("/engineer/graphql", ENGINEER, READ_RUNS)
    assert status == 200 and len(data["data"]["runsOrError"]["results"]) >= DEMO_RUNS
    status, body = proxy.read(f"/engineer/reports/{day}/rejected_rows.csv", ENGINEER)
    assert not EMAIL.findall(body), "the engineer face served the rejects CSV"
    # Through the proxy too, the steward face refuses changes, whoever asks.
    status, data = proxy.graphql("/steward/graphql", ENGINEER, change("launchRun", day))
    assert data["data"]["launchRun"]["__typename"] == "UnauthorizedError"


def test_plain_http_only_redirects_to_https(proxy: Proxy) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=30)
    connection.request("GET", "/steward/reports/")
    response = connection.getresponse()
    assert response.status == 301
    assert response.headers["Location"] == f"https://127.0.0.1:{proxy.https_port}/steward/reports/"


def test_the_ui_websocket_passes_the_proxy(proxy: Proxy) -> None:
    """The Dagster UI subscribes to run logs over a websocket on /graphql."""
    response = proxy.request(
        "/steward/graphql",
        STEWARD,
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Protocol": "graphql-ws",
        },
    )
    assert response.status == 101, (response.status, response.read()[:300])
    assert response.headers["Upgrade"].lower() == "websocket"


def test_report_links_in_metadata_open_the_report_through_the_steward_face(
    faces: Faces, proxy: Proxy
) -> None:
    status, data = proxy.graphql("/steward/graphql", STEWARD, REPORT_LINK)
    assert status == 200, data
    [latest] = data["data"]["assetOrError"]["assetMaterializations"]
    links = {e["label"]: e.get("url") for e in latest["metadataEntries"]}
    base = faces.reports_base_url
    assert links["report"] == f"{base}/{latest['partition']}/report.html"
    assert links["index"] == f"{base}/index.html"
    for link in (links["report"], links["index"]):
        path = link.removeprefix(f"https://127.0.0.1:{proxy.https_port}")
        assert proxy.read(path)[0] == 401
        status, page = proxy.read(path, STEWARD)
        assert status == 200 and "subsync data quality" in page, page[:300]


def test_the_single_sign_on_variant_is_valid_nginx(faces: Faces, tmp_path: Path) -> None:
    """deploy/nginx/sso (auth_request to oauth2-proxy): nginx accepts it as it stands."""
    nginx = _require("nginx")
    values = site_values(tmp_path, faces, free_port())
    site = render(tmp_path / "subsync", "sso", values)
    conf = nginx_conf(tmp_path, site)
    done = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "test is successful" in done.stderr, done.stderr
