"""stackconfig: generation, the secret file, loading with clear errors, bounds and overrides."""

from __future__ import annotations

import os
import socket
import stat

import orjson
import pytest

from exoarmur import stackconfig
from exoarmur.contracts import ReasonCode
from exoarmur.errors import ConfigError
from exoarmur.reliability.bounds import BOUNDS


@pytest.fixture
def config(tmp_path):
    return stackconfig.generate(tmp_path / "stack", tenants=3, nodes_per_tenant=4, peers_per_tenant=2, cells=3,
                                seed=11, overrides={"pending_intents": 7}, defects=["silent-drop"])


def test_generate_builds_the_tenancy(config) -> None:
    assert config.tenants == ["tenant-00", "tenant-01", "tenant-02"]
    assert len(config.nodes) == 12 and len(config.peers) == 6
    assert config.nodes["node-0000"] == "tenant-00" and config.nodes["node-0011"] == "tenant-02"
    assert config.peers["peer-003"].tenant_id == "tenant-01"
    for tenant in config.tenants:
        assert sum(1 for owner in config.nodes.values() if owner == tenant) == 4
        assert sum(1 for peer in config.peers.values() if peer.tenant_id == tenant) == 2
    assert (config.cells, config.seed, config.sync_interval) == (3, 11, "always")


def test_tokens_are_distinct_secrets(config) -> None:
    tokens = [peer.token for peer in config.peers.values()] + [config.operator_token]
    assert len(set(tokens)) == len(tokens) and all(len(t) >= 32 for t in tokens)
    assert config.peer_by_token() == {peer.token: peer for peer in config.peers.values()}


def test_ports_are_distinct_and_free_to_bind(config) -> None:
    ports = [config.nats_port, config.nats_monitor_port, config.api_port, config.effector_port]
    assert len(set(ports)) == 4
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", stackconfig.free_port()))


def test_urls(config) -> None:
    assert config.nats_url == f"nats://127.0.0.1:{config.nats_port}"
    assert config.api_url == f"http://127.0.0.1:{config.api_port}"
    assert config.effector_url == f"http://127.0.0.1:{config.effector_port}"
    assert config.monitor_url == f"http://127.0.0.1:{config.nats_monitor_port}"


def test_saved_with_owner_only_permissions_and_loaded_back(config) -> None:
    mode = stat.S_IMODE(os.stat(config.path).st_mode)
    assert mode == 0o600
    assert stackconfig.load(config.path) == config
    assert stackconfig.load(config.path.parent) == config  # the directory names its stack.json


def test_public_view_holds_no_secret(config) -> None:
    view = orjson.dumps(config.public_view()).decode()
    assert config.operator_token not in view
    assert not any(peer.token in view for peer in config.peers.values())
    assert config.public_view()["defects_injected"] == ["silent-drop"]
    assert config.public_view()["overrides"] == {"pending_intents": 7}


def test_bounds_come_from_the_table_unless_overridden(config) -> None:
    assert config.bound("pending_intents") == 7
    assert config.bound("cell_inflight") == BOUNDS["cell_inflight"].limit
    with pytest.raises(KeyError):
        config.bound("no_such_bound")


def test_unknown_defect_is_refused_at_generation(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown defect 'nope'"):
        stackconfig.generate(tmp_path, tenants=1, nodes_per_tenant=1, peers_per_tenant=1, defects=["nope"])


@pytest.mark.parametrize("content,says", [
    (None, "cannot read stack config"),
    (b"{not json", "is invalid"),
    (b'{"stack_dir": "x"}', "is invalid"),
])
def test_load_errors_are_config_errors_with_a_reason(tmp_path, content, says) -> None:
    path = tmp_path / stackconfig.CONFIG_FILE
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=says) as raised:
        stackconfig.load(path)
    assert raised.value.reason_code is ReasonCode.CONFIG_INVALID


def test_load_refuses_an_unknown_field_or_defect(config) -> None:
    raw = orjson.loads(config.path.read_bytes())
    config.path.write_bytes(orjson.dumps({**raw, "surprise": 1}))
    with pytest.raises(ConfigError, match="is invalid"):
        stackconfig.load(config.path)
    config.path.write_bytes(orjson.dumps({**raw, "defects": ["nope"]}))
    with pytest.raises(ConfigError, match="is invalid"):
        stackconfig.load(config.path)


def test_generate_fixed_uses_the_well_known_ports(tmp_path) -> None:
    fixed = stackconfig.generate_fixed(tmp_path / "s", tenants=1, nodes_per_tenant=1, peers_per_tenant=1)
    assert fixed.host == "0.0.0.0"
    assert {k: getattr(fixed, k) for k in stackconfig.FIXED_PORTS} == stackconfig.FIXED_PORTS
    assert stackconfig.load(fixed.path) == fixed


def test_service_credentials_are_distinct_secrets_kept_out_of_the_public_view(config) -> None:
    secrets_ = list(config.nats_passwords.values()) + list(config.effector_tokens.values())
    assert set(config.nats_passwords) == set(stackconfig.NATS_ROLES)
    assert set(config.effector_tokens) == set(stackconfig.EFFECTOR_ROLES)
    assert len(set(secrets_)) == len(secrets_) and all(len(s) >= 32 for s in secrets_)
    view = orjson.dumps(config.public_view()).decode()
    assert not any(s in view for s in secrets_)
    assert config.public_view()["auth"]["nats_users"] == sorted(stackconfig.NATS_ROLES)
    assert config.nats_credentials("cell") == ("cell", config.nats_passwords["cell"])


def test_the_stack_directory_and_the_server_config_are_owner_only(config) -> None:
    from exoarmur.nats_server import write_server_config

    assert stat.S_IMODE(os.stat(config.path.parent).st_mode) == 0o700
    conf = write_server_config(config)
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o600


def test_a_config_without_every_role_is_refused(config) -> None:
    raw = orjson.loads(config.path.read_bytes())
    raw["nats_passwords"].pop("nemesis")
    config.path.write_bytes(orjson.dumps(raw))
    with pytest.raises(ConfigError, match="is invalid"):
        stackconfig.load(config.path)


def test_nats_cluster_config_and_server_configs(tmp_path):
    """--nats-cluster 3: three servers, each its own name, ports and store, routes to the two
    others with the route user's credentials, and the very same client users as every other."""
    from exoarmur.nats_server import server_config_text

    config = stackconfig.generate(tmp_path, nats_cluster=3, tenants=1, nodes_per_tenant=1, peers_per_tenant=1)
    assert config.nats_replicas == 3 and len(config.nats_servers) == 3
    assert config.nats_url == ",".join(config.nats_servers)
    assert config.nats_component_names() == ["nats-0", "nats-1", "nats-2"]
    assert config.nats_port == config.nats_cluster.nodes[0].client_port
    assert stackconfig.load(tmp_path) == config
    texts = {name: server_config_text(config, name) for name in config.nats_component_names()}
    auth = {text[text.index("authorization {\n  users"):] for text in texts.values()}
    assert len(auth) == 1  # the same users and permissions on every server
    for node in config.nats_cluster.nodes:
        text = texts[node.name]
        assert f"server_name: {node.name}" in text and f"jetstream-{node.name}" in text
        assert f"listen: {config.host}:{node.route_port}" in text
        others = [n for n in config.nats_cluster.nodes if n is not node]
        assert all(f"@{config.host}:{n.route_port}" in text for n in others)
        assert f"@{config.host}:{node.route_port}" not in text
        assert config.nats_cluster.route_password in text
    assert config.nats_cluster.route_password not in str(config.public_view())


def test_single_server_is_unchanged(tmp_path):
    config = stackconfig.generate(tmp_path, tenants=1, nodes_per_tenant=1, peers_per_tenant=1)
    assert config.nats_cluster is None and config.nats_replicas == 1
    assert config.nats_url == f"nats://{config.host}:{config.nats_port}"
    assert config.nats_component_names() == ["nats"]


def test_free_ports_are_distinct_and_below_the_ephemeral_range() -> None:
    ports = stackconfig.free_ports(30)
    assert len(set(ports)) == 30
    assert all(stackconfig.LOWEST_PORT <= port < stackconfig._ephemeral_floor() for port in ports)


def test_a_cluster_config_gives_every_server_its_own_ports(tmp_path) -> None:
    config = stackconfig.generate(tmp_path / "s", nats_cluster=3, tenants=1, nodes_per_tenant=1, peers_per_tenant=1)
    ports = [config.api_port, config.effector_port]
    for node in config.nats_cluster.nodes:
        ports += [node.client_port, node.monitor_port, node.route_port]
    assert len(set(ports)) == 11
