"""docker-compose.yml, checked statically (no Docker engine runs here): the services and images
it promises, health checks, loopback-only ports, and RECAST_* variables that Settings reads."""

import re
from pathlib import Path

import pytest
import yaml

from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
ONE_SHOT = {"topics", "migrate"}  # run to completion; the others run for good
DEFAULT = re.compile(r"^\$\{(\w+):-(.*)\}$")


def test_services():
    assert set(SERVICES) == {"postgres", "kafka", "redis", "api", "ingest", "worker", "beat"} | ONE_SHOT


@pytest.mark.parametrize(
    ("service", "image"),
    [
        ("postgres", "postgres:"),
        ("kafka", "apache/kafka:"),
        ("topics", "apache/kafka:"),
        ("redis", "redis:"),
        ("api", "recast/api:"),
        ("ingest", "recast/app:"),
        ("worker", "recast/app:"),
        ("beat", "recast/app:"),
        ("migrate", "recast/app:"),
    ],
)
def test_images_are_pinned(service, image):
    assert SERVICES[service]["image"].startswith(image)
    assert not SERVICES[service]["image"].endswith(":latest")


def test_built_images_name_targets_of_the_dockerfile():
    found = re.findall(r"^FROM (\S+) AS (\w+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    stages = {stage: base for base, stage in found}
    assert stages["api"].startswith("vllm/vllm-openai:")  # the API runs on vLLM's image
    for name, service in SERVICES.items():
        if "build" in service:
            assert service["build"]["target"] in stages, name


def test_kafka_runs_kraft_without_zookeeper():
    env = SERVICES["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_commands():
    assert SERVICES["api"]["command"][0] == "serve" and SERVICES["api"]["entrypoint"] == ["recast"]
    assert SERVICES["api"]["command"][1:] == ["--host", "0.0.0.0", "--port", "8000"]  # in the container only
    assert SERVICES["ingest"]["command"] == ["ingest"]
    assert "worker" in SERVICES["worker"]["command"] and "beat" in SERVICES["beat"]["command"]
    assert SERVICES["migrate"]["command"] == ["upgrade", "head"]


@pytest.mark.parametrize("name", sorted(set(SERVICES) - ONE_SHOT))
def test_long_running_services_have_health_checks(name):
    check = SERVICES[name]["healthcheck"]
    assert check["test"][0] in {"CMD", "CMD-SHELL"} and len(check["test"]) > 1
    assert {"interval", "timeout", "retries"} <= set(check)
    assert SERVICES[name]["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", sorted(ONE_SHOT))
def test_one_shot_services_do_not_restart(name):
    assert SERVICES[name]["restart"] == "no"


def test_dependants_wait_for_healthy_servers():
    for name, service in SERVICES.items():
        for dep, rule in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {dep}"


def test_published_ports_bind_loopback_only():
    published = [(name, p) for name, s in SERVICES.items() for p in s.get("ports", [])]
    assert published  # postgres, kafka, redis and the API are reachable from the host
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def recast_variables() -> dict[str, str]:
    found = {}
    for service in SERVICES.values():
        env = service.get("environment", {})
        assert isinstance(env, dict), "use the mapping form of environment"
        found.update({k: str(v) for k, v in env.items() if k.startswith("RECAST_")})
    return found


def test_every_recast_variable_is_a_settings_field():
    fields = {f"RECAST_{name.upper()}" for name in Settings.model_fields}
    variables = recast_variables()
    assert {"RECAST_DATABASE_URL", "RECAST_KAFKA_BOOTSTRAP", "RECAST_REDIS_URL"} <= set(variables)
    assert set(variables) <= fields, f"not read by Settings: {sorted(set(variables) - fields)}"


def test_compose_defaults_equal_settings_defaults():
    defaults = Settings()
    for key, value in recast_variables().items():
        if match := DEFAULT.match(value):
            field = key.removeprefix("RECAST_").lower()
            assert Settings(**{field: match.group(2)}) == defaults, f"{key} defaults to {match.group(2)}"


def test_every_service_reads_the_same_settings():
    apps = [s for name, s in SERVICES.items() if name in {"api", "ingest", "worker", "beat", "migrate"}]
    assert all(s["environment"] == apps[0]["environment"] for s in apps)
    Settings(**{k.removeprefix("RECAST_").lower(): v for k, v in apps[0]["environment"].items() if "${" not in v})
