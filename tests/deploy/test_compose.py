"""docker-compose.yml and its Prometheus/Grafana files, checked without a Docker engine.

With the compose plugin, `docker compose config -q`; without it, the Compose Specification's JSON schema (from
the Go module proxy). Then what the schema cannot see: build contexts and bind-mounted files exist, depends_on
names exist, ports are published on 127.0.0.1 only, each Spacesync container's environment is read by our
settings classes (a typo or a missing required value fails with its name), and the Prometheus config passes
promtool with the real rule file and scrapes every service under its own name.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from spacesync.testing.settings import env_names, settings_of
from spacesync.testing.tools import go_module, require_tool

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "compose" / "prometheus.yml"
COMPOSE_GO = ("github.com/compose-spec/compose-go/v2", "v2.16.2")
# The Dockerfile's ENV that our settings read (the rest is PATH and Python's).
IMAGE_ENV = {"SPACESYNC_HTTP_HOST": "0.0.0.0"}  # noqa: S104 (inside the container)
CONTAINER_PORT = 8080
VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>.*))?", re.DOTALL)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution ($$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}) over a loaded file;
    any other form (${VAR:?error}, ${VAR:+alt}) is refused rather than guessed."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["plain"]:
            return env.get(match["plain"], "")
        expression = BRACED.fullmatch(match["braced"])
        if expression is None:
            raise ValueError(f"unsupported substitution {match[0]!r} in {value!r}")
        name, op, default = expression["name"], expression["op"], expression["default"]
        if op == ":-":
            return env.get(name) or interpolate(default, env)
        if op == "-":
            return env[name] if name in env else str(interpolate(default, env))
        return env.get(name, "")

    return VARIABLE.sub(substitute, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as compose sees it on a fresh machine: anchors resolved, variables at their defaults."""
    loaded: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), {})
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def ours(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services built from our Dockerfile."""
    return {name: service for name, service in services.items() if "build" in service}


def long_running(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Ours without the one-shot jobs (restart: "no" and no published port): what Prometheus should scrape."""
    return {name: service for name, service in ours(services).items()
            if service.get("ports") or service.get("restart") != "no"}


def test_interpolation_follows_compose() -> None:
    env = {"SET": "value", "EMPTY": ""}
    assert interpolate("${SET:-x} ${EMPTY:-x} ${EMPTY-x} ${UNSET-x} $SET $$SET ${UNSET}", env) == \
        "value x  x value $SET "
    with pytest.raises(ValueError, match="unsupported"):
        interpolate("${SET:?required}", env)


def compose_plugin() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    version = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False)  # noqa: S603
    return docker if version.returncode == 0 else None


def test_compose_file_is_valid() -> None:
    """`docker compose config` where the plugin exists; else the Compose Specification schema (compose-go's)."""
    docker = compose_plugin()
    if docker is not None:
        subprocess.run([docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"],  # noqa: S603
                       check=True, timeout=60)
        return
    schema = json.loads((go_module(*COMPOSE_GO) / "schema" / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    document = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), {})
    errors = [f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
              for error in validator.iter_errors(document)]
    assert not errors, "docker-compose.yml does not follow the Compose Specification:\n" + "\n".join(errors)


def test_build_contexts_and_dockerfiles_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in ours(services).items():
        build = service["build"] if isinstance(service["build"], dict) else {"context": service["build"]}
        context = ROOT / build["context"]
        assert context.is_dir(), f"{name}: build context {build['context']} does not exist"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile.relative_to(ROOT)} does not exist"
        service_arg = build.get("args", {}).get("SERVICE", "")
        project = ROOT / "services" / service_arg / "pyproject.toml"
        assert project.is_file(), f"{name}: build arg SERVICE={service_arg!r} names no package under services/"
        # The image's CMD runs the console script spacesync-<SERVICE> (a command: may run another module).
        scripts = tomllib.loads(project.read_text())["project"].get("scripts", {})
        assert f"spacesync-{service_arg}" in scripts, f"{project.relative_to(ROOT)} has no spacesync-{service_arg}"


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    """.dockerignore is an allowlist (`*`, then `!path`): each COPY source from the context must be let back in."""
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", ".dockerignore should start by excluding everything"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copies = [line.split()[1:-1] for line in (ROOT / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ") and "--from=" not in line]
    sources = [source for sources in copies for source in sources]
    assert sources, "no COPY from the build context found in the Dockerfile"
    for source in sources:
        assert source in allowed, f"the Dockerfile copies {source}, which .dockerignore leaves out"
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"


def bind_mounts(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(host path, container path) of each bind mount; named volumes are not host paths."""
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                yield volume["source"], volume["target"]
            continue
        source, _, rest = volume.partition(":")
        if source.startswith((".", "/", "~")):
            yield source, rest.partition(":")[0]


def missing_mounts(services: dict[str, dict[str, Any]]) -> list[str]:
    return [f"{name}: {source}" for name, service in services.items() for source, _ in bind_mounts(service)
            if not (ROOT / source).exists()]


def unknown_dependencies(services: dict[str, dict[str, Any]]) -> list[str]:
    return [f"{name} -> {dependency}" for name, service in services.items()
            for dependency in service.get("depends_on", []) if dependency not in services]


def public_ports(services: dict[str, dict[str, Any]]) -> list[str]:
    """Ports published on anything but 127.0.0.1 ("8080:8080" and "8080" publish on every interface)."""
    found = []
    for name, service in services.items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).rpartition(":")[0].rpartition(":")[0]
            if host_ip != "127.0.0.1":
                found.append(f"{name}: {port}")
    return found


def test_bind_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    assert any(bind_mounts(service) for service in services.values()), "the parser sees no bind mounts"
    assert missing_mounts(services) == []


def test_depends_on_names_exist(services: dict[str, dict[str, Any]]) -> None:
    assert unknown_dependencies(services) == []


def test_ports_are_published_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    assert public_ports(services) == []


def test_the_checks_see_what_is_wrong() -> None:
    broken = {"api": {"ports": ["8080:8080", "127.0.0.1:81:80", {"target": 80, "published": 82}, "9000"],
                      "volumes": ["./no/such/file.yml:/etc/x.yml:ro", "named:/data", {"type": "bind",
                                  "source": "./Dockerfile", "target": "/d"}],
                      "depends_on": {"db": {"condition": "service_healthy"}, "api": {}}}}
    assert public_ports(broken) == ["api: 8080:8080", "api: {'target': 80, 'published': 82}", "api: 9000"]
    assert missing_mounts(broken) == ["api: ./no/such/file.yml"]
    assert unknown_dependencies(broken) == ["api -> db"]


def module_of(service: dict[str, Any]) -> str:
    """The module the container runs: `python -m X` in command:, else the image's service package."""
    command = service.get("command")
    if command:
        words = command.split() if isinstance(command, str) else list(command)
        assert words[:2] == ["python", "-m"], f"command {command!r} is not `python -m <module>`"
        return str(words[2])
    package: str = service["build"]["args"]["SERVICE"]
    return "spacesync." + package.replace("-", "_")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def test_each_container_environment_is_read_by_its_settings(
        services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    classes = {name: settings_of(module_of(service)) for name, service in ours(services).items()}
    known = set().union(*(env_names(c) for c in classes.values()))
    for variable in known:  # this machine's settings must not leak into the check
        monkeypatch.delenv(variable, raising=False)
    for name, service in ours(services).items():
        env = {**IMAGE_ENV, **environment(service)}
        unread = sorted(set(env) - known)
        assert not unread, f"{name}: no Spacesync settings read {unread} (a typo?)"
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            try:
                settings = classes[name]()
            except ValidationError as error:
                pytest.fail(f"{name}: {classes[name].__name__} refuses its environment: {error}")
        port = getattr(settings, "http_port", CONTAINER_PORT)  # the demo job serves nothing
        assert port == CONTAINER_PORT, f"{name} would listen on {port}, not {CONTAINER_PORT}"


def test_a_typo_in_the_environment_is_caught() -> None:
    booking = settings_of("spacesync.booking_service")
    assert "SPACESYNC_ADMIN_TOKEN" in env_names(booking)
    assert "KAFKA_BOOTSTRAP_SERVERS" in env_names(booking)  # nested KafkaSettings, by its alias
    assert "SPACESYNC_EXCHANGE_MAX_CONNECTIONS" in env_names(booking)  # nested GatewaySettings
    assert "SPACESYNC_ADMN_TOKEN" not in env_names(booking)


def test_prometheus_config_passes_promtool_with_the_real_rules(
        services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """promtool resolves rule_files on this machine: each container path is mapped back to the mounted file."""
    promtool = require_tool("promtool")
    mounted = {target: ROOT / source for source, target in bind_mounts(services["prometheus"])}
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    missing = [path for path in config["rule_files"] if path not in mounted]
    assert not missing, f"rule files not mounted into the prometheus container: {missing}"
    config["rule_files"] = [str(mounted[path]) for path in config["rule_files"]]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(local)], capture_output=True, text=True,  # noqa: S603
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_prometheus_scrapes_every_service_under_its_name(services: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
               for job in config["scrape_configs"]}
    for name in long_running(services):
        assert targets.get(name) == [f"{name}:{CONTAINER_PORT}"], \
            f"job {name!r} should scrape {name}:{CONTAINER_PORT}, scrapes {targets.get(name)}"
    assert PROMETHEUS_CONFIG.relative_to(ROOT).as_posix() in {
        source.removeprefix("./") for source, _ in bind_mounts(services["prometheus"])}


def test_grafana_loads_the_dashboards_it_is_given(services: dict[str, dict[str, Any]]) -> None:
    """The provider's path is where docker-compose.yml mounts the dashboards folder; one default data source."""
    mounts = {target: (ROOT / source).resolve() for source, target in bind_mounts(services["grafana"])}
    provisioning = mounts["/etc/grafana/provisioning"]
    providers = [provider for file in sorted((provisioning / "dashboards").glob("*.yml"))
                 for provider in yaml.safe_load(file.read_text())["providers"]]
    dashboards = ROOT / "deploy" / "k8s" / "base" / "monitoring" / "dashboards"
    assert [mounts.get(p["options"]["path"]) for p in providers] == [dashboards.resolve()]
    sources = [source for file in sorted((provisioning / "datasources").glob("*.yml"))
               for source in yaml.safe_load(file.read_text())["datasources"]]
    assert [(s["type"], s["url"], s.get("isDefault")) for s in sources] == \
        [("prometheus", "http://prometheus:9090", True)]
    assert sources[0]["uid"], "the data source needs a fixed uid"


def test_kafka_keeps_its_log_on_its_volume(services: dict[str, dict[str, Any]]) -> None:
    """apache/kafka renders server.properties from the KAFKA_* variables alone: without KAFKA_LOG_DIRS the log is
    in the container's /tmp, and a recreated container (a new image, `down`) starts with no topics and no
    committed offsets next to a database that remembers what it published."""
    kafka = services["kafka"]
    named = {target for source, _, target in (v.partition(":") for v in kafka.get("volumes", []))
             if not source.startswith((".", "/", "~"))}
    log_dirs = environment(kafka).get("KAFKA_LOG_DIRS", "/tmp/kafka-logs").split(",")  # noqa: S108 (Kafka's default)
    outside = [d for d in log_dirs if not any(d == v or d.startswith(v.rstrip("/") + "/") for v in named)]
    assert not outside, f"Kafka's log.dirs {outside} are not on a named volume ({sorted(named)})"


def test_stopping_waits_for_the_drain(services: dict[str, dict[str, Any]]) -> None:
    """docker stop's SIGKILL comes after uvicorn's graceful period and the consumers' drain (each the shutdown
    grace) plus the writer's 5 s margin, as terminationGracePeriodSeconds does in Kubernetes."""
    for name, service in ours(services).items():
        if service.get("restart") == "no" or name == "exchange-simulator":  # the demo job; nothing to drain
            continue
        settings = settings_of(module_of(service))
        grace = float(environment(service).get("SPACESYNC_SHUTDOWN_GRACE_SECONDS",
                                               settings.model_fields["shutdown_grace_seconds"].default))
        period = service.get("stop_grace_period", "10s")  # compose's default
        seconds = re.fullmatch(r"(\d+)s", period)
        assert seconds is not None, f"{name}: stop_grace_period {period!r}: write it in seconds (60s)"
        assert int(seconds[1]) > 2 * grace + 5, f"{name}: stop_grace_period {period} <= 2 x {grace} s + 5 s"
