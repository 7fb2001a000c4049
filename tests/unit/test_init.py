"""``python -m exoarmur init [--nats-cluster N]``: the stack config docker-compose.yml's init services
write once, on the well-known ports; with a cluster, node i is ``nats-i``, reached at that name."""

from __future__ import annotations

import json

import pytest

from exoarmur import stackconfig
from exoarmur.__main__ import main as exoarmur_main
from exoarmur.errors import ConfigError
from exoarmur.nats_server import server_config_text


def _init(tmp_path, *extra: str) -> int:
    return exoarmur_main(["init", "--config", str(tmp_path / "stack"), "--host", "0.0.0.0", *extra])


def _lines(text: str, block: str) -> list[str]:
    return text.split(f"\n{block} {{\n", 1)[1].split("\n}\n", 1)[0].splitlines()


def test_init_nats_cluster_3_writes_three_servers_routed_by_name(tmp_path) -> None:
    assert _init(tmp_path, "--nats-cluster", "3") == 0
    config = stackconfig.load(tmp_path / "stack")
    cluster = config.nats_cluster
    assert [(n.name, n.host, n.client_port, n.monitor_port, n.route_port) for n in cluster.nodes] == [
        ("nats-0", "nats-0", 4222, 8222, 6222),
        ("nats-1", "nats-1", 4223, 8223, 6223),
        ("nats-2", "nats-2", 4224, 8224, 6224),
    ]
    assert config.nats_replicas == 3 and (config.nats_port, config.nats_monitor_port) == (4222, 8222)
    assert config.nats_url == "nats://nats-0:4222,nats://nats-1:4223,nats://nats-2:4224"
    assert (config.api_port, config.effector_port) == (8080, 8090)
    credentials = f"{cluster.route_user}:{cluster.route_password}"
    assert cluster.route_user == "route" and len(cluster.route_password) >= 32
    for i in range(3):
        text = server_config_text(config, f"nats-{i}")
        top = [line for line in text.splitlines() if not line.startswith((" ", "}"))]
        assert f"server_name: nats-{i}" in top
        assert f"listen: 0.0.0.0:{4222 + i}" in top and f"http: 0.0.0.0:{8222 + i}" in top
        jetstream = _lines(text, "jetstream")
        assert f'  store_dir: "{tmp_path / "stack"}/jetstream-nats-{i}"' in jetstream
        assert "  sync_interval: always" in jetstream
        assert "  domain: exoarmur" in jetstream  # one JetStream domain, named as the cluster
        route_block = _lines(text, "cluster")
        assert f"  listen: 0.0.0.0:{6222 + i}" in route_block and "  name: exoarmur" in route_block
        assert f"    password: {json.dumps(cluster.route_password)}" in route_block
        routes = json.loads(next(line for line in route_block if line.startswith("  routes: ")).split(": ", 1)[1])
        assert routes == [f"nats-route://{credentials}@nats-{j}:{6222 + j}" for j in range(3) if j != i]
    assert cluster.route_password not in json.dumps(config.public_view())


def test_init_without_the_flag_is_one_server_as_before(tmp_path) -> None:
    assert _init(tmp_path) == 0
    config = stackconfig.load(tmp_path / "stack")
    assert config.nats_cluster is None and config.nats_replicas == 1
    assert {k: getattr(config, k) for k in stackconfig.FIXED_PORTS} == stackconfig.FIXED_PORTS
    assert config.nats_url == "nats://0.0.0.0:4222"
    assert _init(tmp_path, "--nats-cluster", "1") == 0  # 1 is the default: the same stack, kept
    assert stackconfig.load(tmp_path / "stack") == config


@pytest.mark.parametrize("count", ["0", "-2"])
def test_init_refuses_a_cluster_of_no_server(tmp_path, capsys, count) -> None:
    assert _init(tmp_path, "--nats-cluster", count) == 2
    err = capsys.readouterr().err
    assert f"exoarmur init: CONFIG_INVALID: --nats-cluster must be 1 or more, not {count}" in err
    assert "Traceback" not in err
    assert not (tmp_path / "stack" / stackconfig.CONFIG_FILE).exists()


def test_init_refuses_a_non_number(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        _init(tmp_path, "--nats-cluster", "three")
    assert exited.value.code == 2
    assert "--nats-cluster: invalid int value: 'three'" in capsys.readouterr().err


def test_init_keeps_a_cluster_and_refuses_to_call_it_another_size(tmp_path, capsys) -> None:
    assert _init(tmp_path, "--nats-cluster", "3") == 0
    first = stackconfig.load(tmp_path / "stack")
    assert _init(tmp_path, "--nats-cluster", "3") == 0 and _init(tmp_path) == 0
    assert stackconfig.load(tmp_path / "stack") == first  # generated once: same secrets
    capsys.readouterr()
    assert _init(tmp_path, "--nats-cluster", "5") == 2
    assert "is a stack with 3 NATS server(s), not the 5 --nats-cluster asks for" in capsys.readouterr().err
    assert stackconfig.load(tmp_path / "stack") == first


def test_nats_with_an_id_outside_the_cluster_is_refused_and_writes_nothing(tmp_path, capsys) -> None:
    assert _init(tmp_path, "--nats-cluster", "3") == 0
    assert exoarmur_main(["nats", "--config", str(tmp_path / "stack"), "--id", "3"]) == 2
    assert "CONFIG_INVALID: no NATS cluster node 'nats-3'" in capsys.readouterr().err
    assert not list((tmp_path / "stack").glob("nats-server*.conf"))


def test_a_cluster_too_large_for_the_well_known_ports_is_refused_before_anything_is_written(tmp_path) -> None:
    # node 1858's route port would be 6222 + 1858 = 8080, the api's
    with pytest.raises(ConfigError, match="does not fit the well-known ports"):
        stackconfig.generate_fixed(tmp_path / "stack", nats_cluster=1859)
    assert not (tmp_path / "stack").exists()


def test_the_embedded_cluster_keeps_its_nodes_on_the_stack_host(tmp_path) -> None:
    config = stackconfig.generate(tmp_path, nats_cluster=3, tenants=1, nodes_per_tenant=1, peers_per_tenant=1)
    assert all(node.host is None for node in config.nats_cluster.nodes)
    assert config.nats_servers == [f"nats://127.0.0.1:{n.client_port}" for n in config.nats_cluster.nodes]
    assert all("host" not in node for node in config.public_view()["nats_cluster"]["nodes"])
