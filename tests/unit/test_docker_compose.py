"""docker-compose.yml runs the embedded stack's processes, commands, ports and NATS settings.

Docker is absent where this project is built, so the compose file is never run here; this test
ties it to the embedded stack instead: the stack config comes from running compose's own
``init`` command, the commands from ``LocalStack._argv``, the NATS config from
``server_config_text``. A command, port or setting changed on one side only fails it.

These are the default services (the single-server stack); the ``cluster`` profile is checked the
same way in test_docker_compose_cluster.py.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from exoarmur.__main__ import main as exoarmur_main
from exoarmur.nats_server import server_config_text
from exoarmur.stackconfig import StackConfig, load
from exoarmur_cli.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ["python", "-m", "exoarmur"]
# Flags compose adds so components reach each other by service name; nothing else may differ.
OVERRIDE_FLAGS = ("--nats-url", "--effector-url")
CLUSTER = "cluster"  # the profile
CLUSTER_PREFIX = "cluster-"  # its services but the nats-servers: cluster-<embedded component>


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    """What ``docker compose up`` starts: every service without a profile."""
    return {name: service for name, service in compose["services"].items() if "profiles" not in service}


@pytest.fixture(scope="module")
def config_dir(services) -> str:
    """The stack directory inside the containers: init's --config."""
    command = services["init"]["command"]
    return command[command.index("--config") + 1]


def _run_init(command: list[str], config_dir: str, stack_dir: Path) -> StackConfig:
    """The config an init service writes: its own command, run on a temp directory."""
    argv = [str(stack_dir) if arg == config_dir else arg for arg in command]
    assert exoarmur_main(argv) == 0
    generated = load(stack_dir)
    # In the container the directory is config_dir; nothing else about the config changes.
    return generated.model_copy(update={"stack_dir": config_dir})


@pytest.fixture(scope="module")
def config(services, config_dir, tmp_path_factory) -> StackConfig:
    return _run_init(services["init"]["command"], config_dir, tmp_path_factory.mktemp("compose-stack"))


def _split_overrides(command: list[str]) -> tuple[list[str], dict[str, str]]:
    rest, overrides = [], {}
    args = iter(command)
    for arg in args:
        if arg in OVERRIDE_FLAGS:
            overrides[arg] = next(args)
        else:
            rest.append(arg)
    return rest, overrides


def _published(service: dict) -> set[tuple[str, int, int]]:
    out = set()
    for spec in service.get("ports", []):
        host_ip, host_port, container_port = str(spec).split(":")
        out.add((host_ip, int(host_port), int(container_port)))
    return out


def _healthcheck_url(service: dict) -> str:
    test = service["healthcheck"]["test"]
    text = " ".join(test) if isinstance(test, list) else test
    urls = re.findall(r"http://[^'\"\s]+", text)
    assert len(urls) == 1, text
    return urls[0]


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


# --- the processes and their commands -------------------------------------------------------


def test_every_service_is_the_default_stack_or_the_cluster_profile(compose, services):
    """``docker compose up`` starts the single-server stack, as before the profile existed; the
    cluster profile's services (test_docker_compose_cluster.py) only when asked for."""
    for name, service in compose["services"].items():
        in_cluster = name.startswith(CLUSTER_PREFIX) or re.fullmatch(r"nats-\d+", name) is not None
        assert service.get("profiles") == ([CLUSTER] if in_cluster else None), name
    assert "nats" in services and not any(name.startswith(CLUSTER_PREFIX) for name in services)


def test_every_embedded_component_is_a_service_and_nothing_else(services, config):
    components = LocalStack(config).component_names()
    assert config.cells == 2
    assert set(services) == set(components) | {"init", "provision"}


def test_image_entrypoint_is_python_m_exoarmur(compose):
    entrypoints = [rest for keyword, rest in _dockerfile_instructions() if keyword == "ENTRYPOINT"]
    assert len(entrypoints) == 1
    assert json.loads(entrypoints[0]) == ENTRYPOINT
    for name, service in compose["services"].items():
        assert "entrypoint" not in service, name


def test_each_command_is_the_embedded_argv(services, config):
    stack = LocalStack(config)
    for name in stack.component_names():
        argv = stack._argv(name)
        assert argv[:3] == [sys.executable, "-m", "exoarmur"]
        command, _ = _split_overrides(services[name]["command"])
        assert command == argv[3:], name
    command, overrides = _split_overrides(services["provision"]["command"])
    assert command == stack._argv("provision")[3:] and overrides == {"--nats-url": f"nats://nats:{config.nats_port}"}
    assert services["provision"].get("restart") == "no"


def test_overrides_reach_peers_by_service_name_on_the_config_ports(services, config):
    nats_url = f"nats://nats:{config.nats_port}"
    effector_url = f"http://effector:{config.effector_port}"
    expected = {
        "nats": {},
        "effector": {},
        "api": {"--nats-url": nats_url},
        **{f"cell-{i}": {"--nats-url": nats_url, "--effector-url": effector_url} for i in range(config.cells)},
    }
    for name, want in expected.items():
        _, overrides = _split_overrides(services[name]["command"])
        assert overrides == want, name


def test_init_generates_a_config_that_binds_every_interface(config, services):
    assert config.host == "0.0.0.0"  # each container's port must be reachable from the others
    assert services["init"].get("restart") == "no"


def test_init_keeps_an_existing_config(services, config_dir, tmp_path):
    argv = [str(tmp_path) if arg == config_dir else arg for arg in services["init"]["command"]]
    assert exoarmur_main(argv) == 0
    first = load(tmp_path)
    assert exoarmur_main(argv) == 0
    assert load(tmp_path) == first  # same tokens: "generated once"


# --- ports and health ------------------------------------------------------------------------


def test_published_ports_are_the_generated_ports(services, config):
    expected = {
        "nats": {config.nats_port, config.nats_monitor_port},
        "effector": {config.effector_port},
        "api": {config.api_port},
    }
    for name, service in services.items():
        published = _published(service)
        want = expected.get(name, set())
        assert {(host_ip, port, port) for host_ip, port, _ in published} == published, name
        assert {port for _, port, _ in published} == want, name
        # As in the embedded stack, nothing is reachable from off the host.
        assert all(host_ip == "127.0.0.1" for host_ip, _, _ in published), name


def test_healthchecks_probe_what_the_embedded_stack_waits_for(services, config):
    assert _healthcheck_url(services["nats"]) == f"http://127.0.0.1:{config.nats_monitor_port}/healthz"
    assert _healthcheck_url(services["effector"]) == f"http://127.0.0.1:{config.effector_port}/healthz"
    assert _healthcheck_url(services["api"]) == f"http://127.0.0.1:{config.api_port}/readyz"


def test_depends_on_follows_the_embedded_start_order(services, config):
    def deps(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name].get("depends_on", {}).items()}

    assert deps("nats") == {"init": "service_completed_successfully"}
    assert deps("effector") == {"init": "service_completed_successfully"}
    assert deps("provision") == {"nats": "service_healthy"}
    assert deps("api") == {"nats": "service_healthy", "provision": "service_completed_successfully"}
    for i in range(config.cells):
        assert deps(f"cell-{i}") == {"nats": "service_healthy", "effector": "service_healthy", "api": "service_healthy"}
    for name in services:
        for dep, condition in deps(name).items():
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], dep


# --- volumes and the NATS store --------------------------------------------------------------


def _named_mounts(service: dict, compose: dict) -> dict[str, str]:
    """target -> named volume; bind mounts (a path as source) are not named volumes."""
    out = {}
    for spec in service.get("volumes", []):
        source, target = str(spec).split(":")[:2]
        assert source in (compose.get("volumes") or {}), f"{spec} is not a named volume"
        out[target] = source
    return out


def test_every_service_shares_the_stack_volume(compose, services, config_dir):
    stack_volumes = {_named_mounts(service, compose).get(config_dir) for service in services.values()}
    assert len(stack_volumes) == 1 and None not in stack_volumes


def test_nats_store_is_a_named_volume_with_sync_always(compose, services, config, config_dir):
    text = server_config_text(config)
    assert "sync_interval: always" in text
    assert config.sync_interval == "always"
    store_dir = re.search(r'store_dir: "([^"]+)"', text).group(1)
    mounts = _named_mounts(services["nats"], compose)
    assert store_dir in mounts, f"NATS store {store_dir} is not on a named volume"
    assert mounts[store_dir] != mounts[config_dir]  # its own volume, not the shared stack one
    assert f"listen: 0.0.0.0:{config.nats_port}" in text
    assert f"http: 0.0.0.0:{config.nats_monitor_port}" in text


# --- the image -------------------------------------------------------------------------------


def test_dockerfile_installs_the_project_as_readme_does():
    instructions = _dockerfile_instructions()
    pip_installs = [
        shlex.split(rest) for keyword, rest in instructions if keyword == "RUN" and "pip install" in rest
    ]
    assert len(pip_installs) == 1
    words = pip_installs[0]
    args = words[words.index("install") + 1:]
    args = args[: next((i for i, w in enumerate(args) if w in {"&&", ";", "||"}), len(args))]
    # The project itself, every dependency from pyproject.toml: no extras, no pinned extras.
    assert [w for w in args if not w.startswith("-")] == ["."]
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"pip install (-q )?-e \.(\s|$)", readme), "README no longer installs with pip install -e ."

    # Everything pyproject packages, the build hook and the gate and scenario files it ships
    # (setup.py, MANIFEST.in, gates/, scenarios/) are copied in before the install.
    copied = {source.rstrip("/") for keyword, rest in instructions if keyword == "COPY"
              for source in rest.split()[:-1]}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    build_files = {"pyproject.toml", "setup.py", "MANIFEST.in"}
    assert build_files | packages | {"gates", "scenarios"} <= copied
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for needed in build_files | {p + "/" for p in packages | {"gates", "scenarios"}}:
        assert f"!{needed}" in ignore, needed


def test_the_image_creates_every_store_mount_point(compose, config_dir):
    """A fresh named volume takes the owner of its mount point in the image; one the image lacks
    is root's, and nats-server, running unprivileged, could not write its store there."""
    made = set()
    for keyword, rest in _dockerfile_instructions():
        if keyword == "RUN" and "mkdir" in rest:
            for command in re.split(r"&&|;", rest):
                words = shlex.split(command)
                if words[:1] == ["mkdir"]:
                    made.update(w.rstrip("/") for w in words[1:] if not w.startswith("-"))
    for name, service in compose["services"].items():
        for target in _named_mounts(service, compose):
            if target != config_dir:
                assert target in made, f"{name}: the image does not create {target}"


def test_readme_docker_section_says_unverified():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Docker", 1)[1]
    assert "unverified here" in section
    assert "docker-compose.yml" in section
