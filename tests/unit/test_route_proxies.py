"""A cluster routed through fault proxies (``NatsNode.route_via``, ``faults.routes``): each node's
server config lists one proxy port per other node and advertises the silent address; the default
stays direct; a bad plan is refused; isolating a server downs exactly its hops, in both directions,
and healing it leaves down what another isolated server still needs down. Loopback sockets only."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from pydantic import ValidationError

from exoarmur import stackconfig
from exoarmur.nats_server import server_config_text
from exoarmur.stackconfig import NatsCluster
from exoarmur_cli.errors import FaultError
from exoarmur_cli.faults import Faults
from exoarmur_cli.faults.routes import RouteFaults, RouteProxies, route_hops, route_pairs, with_route_proxies
from exoarmur_cli.history import History
from exoarmur_cli.stacks import EmbeddedStack, ExternalStack


def _cluster(tmp_path, servers: int = 3):
    return stackconfig.generate(tmp_path, nats_cluster=servers, tenants=1, nodes_per_tenant=1, peers_per_tenant=1)


def _routes(text: str) -> list[str]:
    block = text.split("\ncluster {\n", 1)[1].split("\n}\n", 1)[0].splitlines()
    return json.loads(next(line for line in block if line.startswith("  routes: ")).split(": ", 1)[1])


def _routed(tmp_path):
    config = _cluster(tmp_path)
    return with_route_proxies(config, stackconfig.free_ports(len(route_pairs(config)) + 1))


def test_each_node_routes_through_its_own_port_per_other_node(tmp_path) -> None:
    direct = _cluster(tmp_path)
    ports = list(range(20001, 20008))
    routed = with_route_proxies(direct, ports)
    assert route_pairs(direct) == [("nats-0", "nats-1"), ("nats-0", "nats-2"), ("nats-1", "nats-0"),
                                   ("nats-1", "nats-2"), ("nats-2", "nats-0"), ("nats-2", "nats-1")]
    assert [n.route_via for n in routed.nats_cluster.nodes] == [
        {"nats-1": 20001, "nats-2": 20002}, {"nats-0": 20003, "nats-2": 20004}, {"nats-0": 20005, "nats-1": 20006}]
    assert routed.nats_cluster.route_advertise_port == 20007
    credentials = f"{routed.nats_cluster.route_user}:{routed.nats_cluster.route_password}"
    for node in routed.nats_cluster.nodes:
        text = server_config_text(routed, node.name)
        others = [n.name for n in routed.nats_cluster.nodes if n.name != node.name]
        assert _routes(text) == [f"nats-route://{credentials}@{routed.host}:{node.route_via[o]}" for o in others]
        assert f"  listen: {routed.host}:{node.route_port}" in text  # it still listens on its own route port
        assert f"  advertise: {routed.host}:20007" in text
        # Only the routes and the advertised address differ from the direct config.
        changed = set(text.splitlines()) ^ set(server_config_text(direct, node.name).splitlines())
        assert {line.split(":")[0].strip() for line in changed} == {"routes", "advertise"}
    hops = route_hops(routed)
    upstream = {n.name: n.route_port for n in routed.nats_cluster.nodes}
    assert [(h.source, h.target, h.listen_port) for h in hops] == [(s, t, p) for (s, t), p in
                                                                   zip(route_pairs(routed), ports)]
    assert all(h.upstream_port == upstream[h.target] for h in hops)


def test_the_default_is_direct_and_advertises_nothing(tmp_path) -> None:
    config = _cluster(tmp_path)
    assert all(n.route_via is None for n in config.nats_cluster.nodes)
    assert config.nats_cluster.route_advertise_port is None and route_hops(config) == []
    for node in config.nats_cluster.nodes:
        text = server_config_text(config, node.name)
        assert "advertise" not in text
        assert [r.rsplit("@", 1)[1] for r in _routes(text)] == [
            f"{config.host}:{n.route_port}" for n in config.nats_cluster.nodes if n is not node]
    assert stackconfig.load(tmp_path) == config  # what stack up --nats-cluster 3 writes, as before


def test_the_routed_config_round_trips_and_shows_its_proxies(tmp_path) -> None:
    routed = _routed(tmp_path)
    stackconfig.save(routed)
    assert stackconfig.load(tmp_path) == routed
    nodes = routed.public_view()["nats_cluster"]["nodes"]
    assert all(set(node["route_via"]) == {"nats-0", "nats-1", "nats-2"} - {node["name"]} for node in nodes)


@pytest.mark.parametrize("ports", [list(range(20001, 20007)), [20001] * 7, list(range(20001, 20009))])
def test_a_wrong_number_of_ports_or_a_repeated_one_is_refused(tmp_path, ports) -> None:
    with pytest.raises(ValueError, match="7 distinct ports"):
        with_route_proxies(_cluster(tmp_path), ports)


def test_a_single_server_has_no_routes_to_proxy(tmp_path) -> None:
    config = stackconfig.generate(tmp_path, tenants=1, nodes_per_tenant=1, peers_per_tenant=1)
    assert route_pairs(config) == [] and route_hops(config) == []
    with pytest.raises(ValueError, match="a cluster"):
        with_route_proxies(config, [20001])


def test_a_route_via_naming_the_wrong_nodes_or_without_advertise_is_invalid(tmp_path) -> None:
    raw = _routed(tmp_path).nats_cluster.model_dump()
    wrong = {**raw, "nodes": [{**raw["nodes"][0], "route_via": {"nats-1": 20001, "nats-9": 20002}}, *raw["nodes"][1:]]}
    with pytest.raises(ValidationError, match="route_via of nats-0 must name exactly the other nodes"):
        NatsCluster.model_validate(wrong)
    with pytest.raises(ValidationError, match="need route_advertise_port"):
        NatsCluster.model_validate({**raw, "route_advertise_port": None})


def _closed_at_once(host: str, port: int) -> bool:
    """A connection is accepted and closed without a byte (the ``down`` toxic)."""
    with socket.create_connection((host, port), timeout=2.0) as conn:
        conn.settimeout(2.0)
        try:
            return conn.recv(1) == b""
        except ConnectionResetError:
            return True


def _silent(host: str, port: int) -> bool:
    """A connection is accepted, held, and never answered (what the advertised address does)."""
    with socket.create_connection((host, port), timeout=2.0) as conn:
        conn.sendall(b"CONNECT {}\r\n")
        conn.settimeout(0.5)
        try:
            conn.recv(1)
        except TimeoutError:
            return True
        return False


def _down(proxies: RouteProxies) -> set[tuple[str, str]]:
    down = {name for name, stats in proxies.stats().items() if stats["down"]}
    return {(hop.source, hop.target) for hop in proxies.hops if hop.name in down}


def test_isolating_and_healing_downs_exactly_a_servers_hops_both_ways(tmp_path) -> None:
    routed = _routed(tmp_path)
    proxies = RouteProxies(routed)
    history = History(tmp_path / "history.jsonl")
    faults = RouteFaults(proxies, history)
    proxies.start()
    try:
        assert _down(proxies) == set()
        assert _silent(routed.host, routed.nats_cluster.route_advertise_port)  # never forwards, never closes
        assert len(faults.isolate("nats-0")) == 4
        assert _down(proxies) == {("nats-0", "nats-1"), ("nats-0", "nats-2"), ("nats-1", "nats-0"), ("nats-2", "nats-0")}
        into = next(hop for hop in proxies.hops if (hop.source, hop.target) == ("nats-1", "nats-0"))
        assert _closed_at_once(routed.host, into.listen_port)
        faults.isolate("nats-1")
        faults.heal("nats-0")  # nats-1 is still cut off: the hops it shares with nats-0 stay down
        assert _down(proxies) == {("nats-0", "nats-1"), ("nats-1", "nats-0"), ("nats-1", "nats-2"), ("nats-2", "nats-1")}
        faults.heal("nats-1")
        assert _down(proxies) == set() and proxies.isolated == set()
        assert proxies.stats()[into.name]["refused"] >= 1
        with pytest.raises(ValueError, match="no route proxies for 'nats-7'"):
            proxies.isolate("nats-7")
    finally:
        proxies.stop()
    proxies.stop()  # a second stop is a no-op
    history.close()
    recorded = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [(e["f"], e["value"]["target"]) for e in recorded] == [
        ("route_cut", "nats-0"), ("route_cut", "nats-1"), ("route_heal", "nats-0"), ("route_heal", "nats-1")]
    assert not any(t.name == "exoarmur-route-proxies" for t in threading.enumerate())
    time.sleep(0.05)
    for port in [hop.listen_port for hop in proxies.hops] + [proxies.advertise_port]:
        with socket.socket() as probe:
            assert probe.connect_ex((routed.host, port)) != 0, port


def test_a_port_taken_is_a_stack_error_and_nothing_is_left_listening(tmp_path) -> None:
    from exoarmur_cli.errors import StackError

    routed = _routed(tmp_path)
    taken = route_hops(routed)[3].listen_port
    with socket.socket() as holder:
        holder.bind((routed.host, taken))
        holder.listen()
        proxies = RouteProxies(routed)
        with pytest.raises(StackError, match=f"cannot listen on {routed.host}:{taken}"):
            proxies.start()
    assert not any(t.name == "exoarmur-route-proxies" for t in threading.enumerate())
    with socket.socket() as probe:
        assert probe.connect_ex((routed.host, route_hops(routed)[0].listen_port)) != 0


def test_a_single_server_or_external_stack_has_no_route_faults(tmp_path) -> None:
    faults = Faults(EmbeddedStack(seed=0, overrides={}, defects=[]), History(tmp_path / "h.jsonl"), effector=None)
    with pytest.raises(FaultError, match="no fault proxy sits on the routes between nats-servers"):
        faults.routes()
    _cluster(tmp_path)
    external = ExternalStack(nats_url="nats://127.0.0.1:1", api_url="http://127.0.0.1:1", stack_config=tmp_path)
    with pytest.raises(FaultError, match="an external stack's nats-servers"):
        Faults(external, History(tmp_path / "e.jsonl"), effector=None).routes()
