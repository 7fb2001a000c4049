"""docker-compose.yml's ``cluster`` profile runs the embedded 3-node cluster (``exoarmur stack up
--nats-cluster 3``): the same processes and commands, every server routing to the two others by
service name, the components connecting with the whole server list.

As in test_docker_compose.py, nothing here runs Docker (there is none where this is built): the
config comes from running the profile's own ``cluster-init`` command, the commands from
``LocalStack._argv``, each server's settings from the config text ``nats --id i`` writes.
"""

from __future__ import annotations

import json
import sys
from urllib.parse import urlsplit

import pytest

from exoarmur.nats_server import server_config_text
from exoarmur.stackconfig import StackConfig
from exoarmur_cli.stack import LocalStack
from test_docker_compose import (  # noqa: F401 (compose, config, config_dir, services: fixtures)
    CLUSTER,
    CLUSTER_PREFIX,
    _healthcheck_url,
    _named_mounts,
    _published,
    _run_init,
    _split_overrides,
    compose,
    config,
    config_dir,
    services,
)


@pytest.fixture(scope="module")
def cluster_services(compose) -> dict:
    """The profile's services, by the embedded component each runs (``cluster-api``: api)."""
    return {name.removeprefix(CLUSTER_PREFIX): service for name, service in compose["services"].items()
            if service.get("profiles") == [CLUSTER]}


@pytest.fixture(scope="module")
def cluster_config(cluster_services, config_dir, tmp_path_factory) -> StackConfig:
    command = cluster_services["init"]["command"]
    assert command[command.index("--config") + 1] == config_dir
    return _run_init(command, config_dir, tmp_path_factory.mktemp("compose-cluster"))


def _compose_name(component: str) -> str:
    return component if component.startswith("nats") else CLUSTER_PREFIX + component


def _block(text: str, name: str) -> list[str]:
    """The lines of a top-level ``name { ... }`` block of a nats-server config ([] if none)."""
    if f"\n{name} {{\n" not in text:
        return []
    return text.split(f"\n{name} {{\n", 1)[1].split("\n}\n", 1)[0].splitlines()


def _setting(lines: list[str], key: str) -> str | None:
    return next((line.split(": ", 1)[1] for line in lines if line.strip().startswith(key + ": ")), None)


def _server_settings(text: str) -> dict:
    """What a nats-server config says about one server: its name, where it listens (clients,
    monitoring, routes), its routes, its JetStream store, and its client users with their
    permissions (top level; the cluster block has its own authorization, for routes)."""
    top = [line for line in text.splitlines() if not line.startswith((" ", "}"))]
    cluster, jetstream = _block(text, "cluster"), _block(text, "jetstream")
    users_at = text.find("\nauthorization {\n  users")
    return {
        "server_name": _setting(top, "server_name"),
        "listen": _setting(top, "listen"),
        "http": _setting(top, "http"),
        "route_listen": _setting(cluster, "listen"),
        "routes": json.loads(_setting(cluster, "routes") or "[]"),
        "store_dir": (_setting(jetstream, "store_dir") or "").strip('"') or None,
        "sync_interval": _setting(jetstream, "sync_interval"),
        "users": text[users_at:] if users_at >= 0 else None,
    }


@pytest.fixture(scope="module")
def cluster_servers(cluster_config) -> dict[str, dict]:
    """Each server's settings, from the config text ``nats --id i`` writes in its container."""
    return {name: _server_settings(server_config_text(cluster_config, name))
            for name in cluster_config.nats_component_names()}


def test_cluster_profile_is_the_embedded_cluster_and_nothing_else(cluster_services, cluster_config):
    stack = LocalStack(cluster_config)
    assert cluster_config.nats_replicas == 3
    assert cluster_config.nats_component_names() == ["nats-0", "nats-1", "nats-2"]
    assert set(cluster_services) == set(stack.component_names()) | {"init", "provision"}
    assert cluster_services["init"].get("restart") == "no" and cluster_services["provision"].get("restart") == "no"


def test_cluster_commands_are_the_embedded_argv(cluster_services, cluster_config):
    stack = LocalStack(cluster_config)
    for name in [*stack.component_names(), "provision"]:
        argv = stack._argv(name)
        assert argv[:3] == [sys.executable, "-m", "exoarmur"]
        command, _ = _split_overrides(cluster_services[name]["command"])
        assert command == argv[3:], name


def test_cluster_components_get_every_server_by_service_name(compose, cluster_services, cluster_config):
    nodes = cluster_config.nats_cluster.nodes
    servers = [f"nats://{node.name}:{node.client_port}" for node in nodes]
    for node in nodes:  # each server's name is its service's, and the config reaches it there
        assert node.host == node.name and compose["services"][node.name].get("profiles") == [CLUSTER]
    assert cluster_config.nats_servers == servers
    effector_url = f"http://{_compose_name('effector')}:{cluster_config.effector_port}"
    expected = {
        **{node.name: {} for node in nodes},
        "effector": {},
        "provision": {"--nats-url": ",".join(servers)},
        "api": {"--nats-url": ",".join(servers)},
        **{f"cell-{i}": {"--nats-url": ",".join(servers), "--effector-url": effector_url}
           for i in range(cluster_config.cells)},
    }
    assert set(expected) == set(cluster_services) - {"init"}
    for name, want in expected.items():
        _, overrides = _split_overrides(cluster_services[name]["command"])
        assert overrides == want, name


def test_every_server_routes_to_the_two_others_by_service_name(cluster_config, cluster_servers):
    cluster = cluster_config.nats_cluster
    assert len({s["server_name"] for s in cluster_servers.values()}) == 3
    route_ports = {}
    for name, server in cluster_servers.items():
        assert server["server_name"] == name  # the service's name: where the others route to it
        host, _, port = server["route_listen"].rpartition(":")
        assert host == "0.0.0.0"
        route_ports[name] = int(port)
    assert len(set(route_ports.values())) == 3
    for name, server in cluster_servers.items():
        routes = [urlsplit(route) for route in server["routes"]]
        assert all(r.scheme == "nats-route" for r in routes), name
        assert {(r.username, r.password) for r in routes} == {(cluster.route_user, cluster.route_password)}, name
        targets = sorted((r.hostname, r.port) for r in routes)
        assert targets == sorted((other, route_ports[other]) for other in cluster_servers if other != name), name


def test_cluster_servers_have_jetstream_on_their_own_store_volumes(compose, cluster_services, cluster_servers,
                                                                    config_dir):
    stores = set()
    for name, server in cluster_servers.items():
        assert server["store_dir"] and server["sync_interval"] == "always", name
        mounts = _named_mounts(cluster_services[name], compose)
        assert server["store_dir"] in mounts, f"{name}: store {server['store_dir']} is not on a named volume"
        assert mounts[server["store_dir"]] != mounts[config_dir]
        stores.add(mounts[server["store_dir"]])
    assert len(stores) == 3  # each server its own store


def test_cluster_servers_have_the_single_servers_users_and_permissions(config, cluster_config, cluster_servers):
    def masked(users: str, passwords: dict[str, str]) -> str:
        for role, password in passwords.items():
            users = users.replace(password, f"<{role}>")
        return users

    single = masked(_server_settings(server_config_text(config))["users"], config.nats_passwords)
    assert "<api>" in single and "permissions" in single
    for name, server in cluster_servers.items():
        assert masked(server["users"], cluster_config.nats_passwords) == single, name


def test_cluster_ports_and_healthchecks_are_the_servers_own(cluster_services, cluster_config, cluster_servers):
    for name, server in cluster_servers.items():
        client, monitor = int(server["listen"].rpartition(":")[2]), int(server["http"].rpartition(":")[2])
        node = next(n for n in cluster_config.nats_cluster.nodes if n.name == name)
        assert (client, monitor) == (node.client_port, node.monitor_port), name
        assert _published(cluster_services[name]) == {("127.0.0.1", client, client), ("127.0.0.1", monitor, monitor)}
        assert _healthcheck_url(cluster_services[name]) == f"http://127.0.0.1:{monitor}/healthz"
    assert _published(cluster_services["api"]) == {("127.0.0.1", cluster_config.api_port, cluster_config.api_port)}
    assert _published(cluster_services["effector"]) == {
        ("127.0.0.1", cluster_config.effector_port, cluster_config.effector_port)}
    assert _healthcheck_url(cluster_services["api"]) == f"http://127.0.0.1:{cluster_config.api_port}/readyz"
    assert _healthcheck_url(cluster_services["effector"]) == f"http://127.0.0.1:{cluster_config.effector_port}/healthz"
    for name in ["init", "provision", *(f"cell-{i}" for i in range(cluster_config.cells))]:
        assert _published(cluster_services[name]) == set(), name


def test_cluster_depends_on_follows_the_embedded_start_order(cluster_services, cluster_config):
    def deps(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in cluster_services[name].get("depends_on", {}).items()}

    servers = {name: "service_healthy" for name in cluster_config.nats_component_names()}
    for name in servers:  # none waits for another: a quorum must start together to elect a leader
        assert deps(name) == {_compose_name("init"): "service_completed_successfully"}, name
    assert deps("effector") == {_compose_name("init"): "service_completed_successfully"}
    assert deps("provision") == servers
    assert deps("api") == {**servers, _compose_name("provision"): "service_completed_successfully"}
    for i in range(cluster_config.cells):
        assert deps(f"cell-{i}") == {**servers, _compose_name("effector"): "service_healthy",
                                     _compose_name("api"): "service_healthy"}
    by_compose_name = {_compose_name(name): service for name, service in cluster_services.items()}
    for name in cluster_services:
        for dep, condition in deps(name).items():
            assert dep in by_compose_name, f"{name} depends on {dep}, outside the cluster profile"
            if condition == "service_healthy":
                assert "healthcheck" in by_compose_name[dep], dep


def test_the_cluster_has_its_own_stack_volume(compose, services, cluster_services, config_dir):
    single = {_named_mounts(service, compose).get(config_dir) for service in services.values()}
    cluster = {_named_mounts(service, compose).get(config_dir) for service in cluster_services.values()}
    assert len(cluster) == 1 and None not in cluster
    assert not cluster & single  # cluster-init never finds the single server's config, nor the reverse


def test_the_cluster_profile_says_it_is_unverified_and_how_it_is_run(compose):
    from test_docker_compose import ROOT

    header = (ROOT / "docker-compose.yml").read_text().split("\nx-exoarmur:", 1)[0]
    assert "UNVERIFIED" in header and "test_docker_compose_cluster.py" in header
    targets = [name for name in compose["services"] if name.startswith(CLUSTER_PREFIX + "cell-")]
    assert f"docker compose --profile {CLUSTER} up -d --build {' '.join(targets)}" in header
    section = (ROOT / "README.md").read_text().split("## Beyond one machine", 1)[1].split("\n## ", 1)[0]
    assert "parse-tested only" in section and "test_docker_compose_cluster.py" in section
