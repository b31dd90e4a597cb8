"""docker-compose.yml, checked the way Compose reads it (no Docker engine runs here): interpolated and
validated against the Compose Specification's schema (tests/support/compose), every service's command
parsed by the program it starts, and every RECAST_* variable a field of Settings.

The Celery services start ``celery -A learner.celery_app``: their test imports that module and parses the
worker and beat command lines with Celery's own CLI, so it fails while the module does not exist."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from schemas.settings import Settings
from tests.support.compose import CommandLineError, InterpolationError, interpolate, load, parse_click
from tests.support.paths import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
# What an operator must export (the file's ${VAR:?...} references); any non-empty value interpolates.
REQUIRED = {"POSTGRES_PASSWORD": "pw", "REDIS_PASSWORD": "rpw", "RECAST_API_KEYS": "ab" * 32,
            "RECAST_ADMIN_TOKEN_SHA256": "cd" * 32}
RAW = yaml.safe_load(COMPOSE_FILE.read_text())  # before interpolation: the ${VAR:-default} texts
COMPOSE = load(COMPOSE_FILE, REQUIRED)
SERVICES = COMPOSE["services"]
ONE_SHOT = {"topics", "migrate"}  # run to completion; the others run for good
DEFAULT = re.compile(r"^\$\{(\w+):-(.*)\}$")
STAGES = dict(re.findall(r"^FROM \S+ AS (\w+)$(.*?)(?=^FROM |\Z)", (ROOT / "Dockerfile").read_text(), re.M | re.S))


def entrypoint_of_stage(stage: str) -> list[str]:
    (line,) = re.findall(r"^ENTRYPOINT (\[.*\])$", STAGES[stage], re.M)
    return json.loads(line)


def argv(name: str) -> list[str]:
    """What the service's container runs: its entrypoint (or its image's, for our own images) + command."""
    service = SERVICES[name]
    entrypoint = service.get("entrypoint") or entrypoint_of_stage(service["build"]["target"])
    command = service.get("command", [])
    return [*entrypoint, *(shlex.split(command) if isinstance(command, str) else command)]


# ---------------------------------------------------------------- the file as Compose reads it


def test_the_file_is_valid_compose_once_its_required_variables_are_set():
    # load() above interpolated it and validated it against compose-spec.json; spot-check the outcome.
    assert COMPOSE["x-recast-env"]["RECAST_DATABASE_URL"] == "postgresql+psycopg://recast:pw@postgres:5432/recast"
    assert SERVICES["ingest"]["environment"]["RECAST_TOPIC_PARTITIONS"] == "4"  # ${VAR:-4}, nothing exported
    assert "--topic $t " in SERVICES["topics"]["command"][0]  # $$t: a literal $ for the container's shell
    assert SERVICES["worker"]["image"] == "recast/app:0.1.0"  # merged from x-app


@pytest.mark.parametrize("variable", sorted(REQUIRED))
def test_each_required_variable_is_refused_when_unset_or_empty(variable):
    for env in ({k: v for k, v in REQUIRED.items() if k != variable}, {**REQUIRED, variable: ""}):
        with pytest.raises(InterpolationError, match=f"required variable {variable} is missing"):
            load(COMPOSE_FILE, env)


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        (lambda d: d["services"]["api"].update(healthchek=d["services"]["api"].pop("healthcheck")), "a misspelt key"),
        (lambda d: d["services"]["ingest"]["depends_on"]["kafka"].update(condition="service_ready"), "a bad condition"),
        (lambda d: d["services"]["redis"].update(ports="127.0.0.1:6379:6379"), "ports not a list"),
        (lambda d: d["services"]["migrate"].update(restart=None, command={"upgrade": "head"}), "a command mapping"),
    ],
)
def test_the_schema_refuses_what_compose_refuses(tmp_path, edit, what):
    """The validation is real: each edit of the shipped file makes it invalid."""
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    edit(document)
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(document))
    with pytest.raises(jsonschema.ValidationError):
        load(broken, REQUIRED)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),
        ("${A-x}", {"A": ""}, ""),
        ("${A-x}", {}, "x"),
        ("${A:+y}", {"A": "1"}, "y"),
        ("${A:+y}", {"A": ""}, ""),
        ("${A+y}", {"A": ""}, "y"),
        ("a$B-c", {"B": "b"}, "ab-c"),
        ("$${A}", {"A": "1"}, "${A}"),
        ("${A:-${B:-deep}}", {}, "deep"),
        ("${A?must}", {"A": ""}, ""),
    ],
)
def test_interpolation_follows_compose(text, env, expected):
    assert interpolate(text, env) == expected


@pytest.mark.parametrize("text", ["${A:?say why}", "${A?say why}", "a $ b", "${A", "${1A}"])
def test_interpolation_refuses_what_compose_refuses(text):
    with pytest.raises(InterpolationError):
        interpolate(text, {})


# ---------------------------------------------------------------- every command names something that exists


def test_our_images_start_the_recast_console_script():
    import importlib
    import tomllib

    assert {stage: entrypoint_of_stage(stage) for stage in STAGES} == {"app": ["recast"], "api": ["recast"]}
    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["recast"]
    module, _, function = target.partition(":")
    assert callable(getattr(importlib.import_module(module), function)), target


@pytest.mark.parametrize("name", ["api", "ingest"])
def test_recast_services_run_a_command_of_the_recast_cli(name):
    import typer

    from ops.cli.app import app

    command = argv(name)
    assert command[0] == "recast"
    contexts = parse_click(typer.main.get_command(app), "recast", command[1:])
    assert contexts[-1].info_name == command[1]


def test_the_ingest_health_check_watches_the_file_recast_ingest_touches():
    import typer

    from ops.cli.app import app

    (ctx, ingest) = parse_click(typer.main.get_command(app), "recast", argv("ingest")[1:])
    assert ingest.info_name == "ingest"
    assert str(ingest.params["alive"]) in SERVICES["ingest"]["healthcheck"]["test"][1]


def test_the_api_serves_where_its_port_and_health_check_point():
    import typer

    from ops.cli.app import app

    serve = parse_click(typer.main.get_command(app), "recast", argv("api")[1:])[-1]
    assert serve.params["host"] == "0.0.0.0"  # inside the container only; the published port is loopback
    assert SERVICES["api"]["ports"] == [f"127.0.0.1:{serve.params['port']}:{serve.params['port']}"]
    assert f"127.0.0.1:{serve.params['port']}/readyz" in SERVICES["api"]["healthcheck"]["test"][-1]


def test_migrate_runs_alembic_upgrade_to_the_one_head_of_the_shipped_migrations():
    from alembic.config import CommandLine, Config
    from alembic.script import ScriptDirectory

    command = argv("migrate")
    assert command[0] == "alembic"
    options = CommandLine(prog="alembic").parser.parse_args(command[1:])
    assert options.cmd[0].__name__ == "upgrade" and options.revision == "head"
    config = Config(str(ROOT / "alembic.ini"))
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1
    copied = re.findall(r"^COPY (\S+(?: \S+)*) \S+$", STAGES["app"], re.M)
    assert {"alembic.ini", "migrations"} <= {w for line in copied for w in line.split()}  # in the image


def celery_command_lines() -> list[tuple[str, list[str]]]:
    lines = [(name, argv(name)) for name in ("worker", "beat")]
    lines += [(f"{name} health check", shlex.split(interpolate(SERVICES[name]["healthcheck"]["test"][1], {})))
              for name in ("worker",)]  # fmt: skip
    return lines


@pytest.mark.parametrize(("what", "command"), celery_command_lines(), ids=lambda v: v if isinstance(v, str) else "")
def test_celery_services_start_an_app_that_exists_with_options_celery_accepts(what, command):
    """`celery -A MODULE SUBCOMMAND ...`: MODULE is importable and holds a Celery app (found the way
    `celery -A` finds it), and Celery's own CLI parses the subcommand and its options."""
    from celery import Celery
    from celery.app.utils import find_app
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery

    assert command[0] == "celery"
    group = celery.make_context("celery", command[1:], obj=None, resilient_parsing=True)  # just the -A value
    module = group.params["app"]
    app = find_app(module)  # ImportError here: the module does not exist
    assert isinstance(app, Celery), f"{module} holds no Celery app"
    contexts = parse_click(celery, "celery", command[1:], obj=CLIContext(app=app, no_color=True, workdir=None))
    names = {"worker": "worker", "beat": "beat", "worker health check": "inspect"}
    assert contexts[-1].info_name == names[what]
    if what == "worker health check":
        assert contexts[-1].params["command"] == "ping" and contexts[-1].params["timeout"] == 5


def test_beat_keeps_its_schedule_where_its_health_check_looks():
    command = argv("beat")
    (schedule,) = [a.split("=", 1)[1] for a in command if a.startswith("--schedule=")]
    assert schedule.startswith("/var/lib/recast/runs/")  # on the recast-runs volume, which survives a restart
    assert schedule in SERVICES["beat"]["healthcheck"]["test"][1]
    assert "recast-runs:/var/lib/recast/runs" in SERVICES["beat"]["volumes"]


def test_a_command_unknown_to_the_cli_is_caught():
    """The parse is real: a command or option the CLI lacks fails it."""
    import typer

    from ops.cli.app import app

    group = typer.main.get_command(app)
    for bad in (["ingest", "--no-such-option"], ["no-such-command"], ["serve", "--port", "eighty"],
                ["rl", "--out", "x"], ["keys", "old"]):  # fmt: skip
        with pytest.raises(CommandLineError):
            parse_click(group, "recast", bad)


# ---------------------------------------------------------------- images, health, ports


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


# ---------------------------------------------------------------- RECAST_* and Settings


def recast_variables() -> dict[str, str]:
    """Every RECAST_* a service sets, with its text before interpolation."""
    found = {}
    for service in RAW["services"].values():
        env = service.get("environment", {})
        assert isinstance(env, dict), "use the mapping form of environment"
        found.update({k: str(v) for k, v in env.items() if k.startswith("RECAST_")})
    return found


FIELDS = {f"RECAST_{name.upper()}" for name in Settings.model_fields}


def test_every_recast_variable_set_is_a_settings_field():
    variables = recast_variables()
    assert {"RECAST_DATABASE_URL", "RECAST_KAFKA_BOOTSTRAP", "RECAST_REDIS_URL"} <= set(variables)
    assert set(variables) <= FIELDS, f"not read by Settings: {sorted(set(variables) - FIELDS)}"


def test_every_recast_variable_read_from_the_host_is_a_settings_field():
    referenced = set(re.findall(r"\$\{(RECAST_\w+)", COMPOSE_FILE.read_text()))
    assert "RECAST_API_KEYS" in referenced
    assert referenced <= FIELDS, f"not read by Settings: {sorted(referenced - FIELDS)}"


def test_compose_defaults_equal_settings_defaults():
    defaults = Settings()
    for key, value in recast_variables().items():
        if match := DEFAULT.match(value):
            field = key.removeprefix("RECAST_").lower()
            assert Settings(**{field: match.group(2)}) == defaults, f"{key} defaults to {match.group(2)}"


def test_every_service_reads_the_same_valid_settings():
    apps = [s for name, s in SERVICES.items() if name in {"api", "ingest", "worker", "beat", "migrate"}]
    assert all(s["environment"] == apps[0]["environment"] for s in apps)
    settings = Settings(**{k.removeprefix("RECAST_").lower(): v for k, v in apps[0]["environment"].items()})
    assert settings.engine == "vllm" and str(settings.spool_dir).startswith("/var/lib/recast/runs/")
    assert Path(settings.data_dir) == Path("/app/data/amazon18-industrial")
