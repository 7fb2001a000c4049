"""One stack's configuration: ports, directories, identities and their secrets.

Generated once per stack (``generate``) into ``<stack_dir>/stack.json`` with mode 0600; every
process reads it (``load``). Tokens are secrets: they are never logged, and ``public_view``
is what may be printed.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from exoarmur.errors import ConfigError

CONFIG_FILE = "stack.json"
# Who connects to NATS, each as its own user (permissions: ``exoarmur.natsauth.ROLES``).
NATS_ROLES = ("provisioner", "api", "cell", "harness", "nemesis")
# Who may call the effector: the cells apply effects, the harness sets faults and reads the ledger.
EFFECTOR_ROLES = ("cell", "harness")
DEFAULT_CELLS = 2  # cell processes, each pulling from the one consumer


class Peer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    peer_id: str
    tenant_id: str
    token: str


class NatsNode(BaseModel):
    """One server of a NATS cluster: its name (``server_name``, also the component's name), ports,
    and the host the other servers and the clients reach it at (None: the stack's ``host``; in
    docker-compose.yml, its service's name).

    ``route_via``: None, the server routes straight to each other's route port. Otherwise, per
    other node's name, the port on the stack's ``host`` it dials instead: a fault proxy forwarding
    to that node's route port (``run-gates --nats-cluster N`` puts one on each direction of each
    pair, so that the harness can cut a server's routes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    client_port: int
    monitor_port: int
    route_port: int
    host: str | None = None
    route_via: dict[str, int] | None = None


class NatsCluster(BaseModel):
    """A JetStream cluster on this host: every server with the same users; routes authenticate with
    their own credentials (the route user is no client user). Streams and buckets are replicated
    on every server (``replicas``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "exoarmur"
    nodes: list[NatsNode]
    route_user: str = "route"
    route_password: str  # a secret, like the NATS passwords
    # With ``route_via``: the port every server advertises as its route address (``cluster.advertise``)
    # on the stack's host, where a connection is accepted and never answered (``route_server``). A
    # server dials the address another advertises when it learns of it through a third (an
    # implicit route), straight to its route port, past any proxy: this way only the routes a
    # config lists form.
    route_advertise_port: int | None = None

    @property
    def replicas(self) -> int:
        return len(self.nodes)

    @model_validator(mode="after")
    def _routes_via_known_nodes(self) -> "NatsCluster":
        """A node routed through proxies names exactly the other nodes, each with its own port."""
        names = [node.name for node in self.nodes]
        if any(node.route_via is not None for node in self.nodes) and self.route_advertise_port is None:
            raise ValueError("nodes routed through proxies (route_via) need route_advertise_port")
        for node in self.nodes:
            others = sorted(name for name in names if name != node.name)
            if node.route_via is not None and sorted(node.route_via) != others:
                raise ValueError(f"route_via of {node.name} must name exactly the other nodes {others}, "
                                 f"not {sorted(node.route_via)}")
        return self


class StackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stack_dir: str
    host: str = "127.0.0.1"
    nats_port: int
    nats_monitor_port: int
    api_port: int
    effector_port: int
    cells: int = DEFAULT_CELLS
    seed: int = 0
    sync_interval: str = "always"  # JetStream fsync policy: an ack means on disk
    ledger_dir: str = ""  # where the effector keeps its SQLite ledger ("": the stack dir)
    tenants: list[str]
    nodes: dict[str, str]  # node_id -> owning tenant_id
    peers: dict[str, Peer]  # peer_id -> Peer
    operator_token: str
    # One NATS password per role (NATS_ROLES) and one effector bearer token per caller
    # (EFFECTOR_ROLES): secrets, like the tokens above.
    nats_passwords: dict[str, str]
    effector_tokens: dict[str, str]
    # Per-stack overrides of named policy numbers (e.g. {"approval_wait_ms": 2000}); the
    # defaults live in the reliability tables, never here.
    overrides: dict[str, float] = {}
    # Deliberately injected defects (exoarmur.defects); empty on every real stack.
    defects: list[str] = []
    # None: one nats-server (nats_port). A cluster: its first node is nats_port/nats_monitor_port.
    nats_cluster: NatsCluster | None = None

    @field_validator("defects")
    @classmethod
    def _known_defects(cls, value: list[str]) -> list[str]:
        from exoarmur.defects import parse

        parse(value)
        return value

    @field_validator("nats_passwords")
    @classmethod
    def _every_nats_role(cls, value: dict[str, str]) -> dict[str, str]:
        if set(value) != set(NATS_ROLES):
            raise ValueError(f"nats_passwords must name exactly the roles {', '.join(NATS_ROLES)}")
        return value

    @field_validator("effector_tokens")
    @classmethod
    def _every_effector_role(cls, value: dict[str, str]) -> dict[str, str]:
        if set(value) != set(EFFECTOR_ROLES):
            raise ValueError(f"effector_tokens must name exactly the callers {', '.join(EFFECTOR_ROLES)}")
        return value

    def nats_credentials(self, role: str) -> tuple[str, str]:
        """(user, password) of a NATS role: the user is the role's name."""
        return role, self.nats_passwords[role]

    def bound(self, name: str) -> int:
        """A bound from the reliability table (``BOUNDS``), unless this stack overrides it."""
        from exoarmur.reliability.bounds import BOUNDS

        return int(self.overrides.get(name, BOUNDS[name].limit))

    @property
    def nats_servers(self) -> list[str]:
        """Every server a client may connect to (one, or each node of the cluster)."""
        if self.nats_cluster is None:
            return [f"nats://{self.host}:{self.nats_port}"]
        return [f"nats://{self.nats_node_host(node)}:{node.client_port}" for node in self.nats_cluster.nodes]

    def nats_node_host(self, node: NatsNode) -> str:
        """Where the other servers and the clients reach a cluster node."""
        return node.host or self.host

    def route_addresses(self, node: NatsNode) -> list[str]:
        """``host:port`` a cluster node routes to, one per other node in the cluster's order: the
        other's route port, or the proxy port ``node.route_via`` names for it."""
        others = [n for n in self.nats_cluster.nodes if n.name != node.name]
        if node.route_via is None:
            return [f"{self.nats_node_host(n)}:{n.route_port}" for n in others]
        return [f"{self.host}:{node.route_via[n.name]}" for n in others]

    @property
    def nats_url(self) -> str:
        """The servers as one string, comma-separated (``natsio.connect`` splits it)."""
        return ",".join(self.nats_servers)

    @property
    def nats_replicas(self) -> int:
        return 1 if self.nats_cluster is None else self.nats_cluster.replicas

    def nats_component_names(self) -> list[str]:
        """The stack's nats-server processes: ``nats``, or one per cluster node (``nats-0`` …)."""
        return ["nats"] if self.nats_cluster is None else [node.name for node in self.nats_cluster.nodes]

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def effector_url(self) -> str:
        return f"http://{self.host}:{self.effector_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.nats_monitor_port}"

    @property
    def path(self) -> Path:
        return Path(self.stack_dir) / CONFIG_FILE

    def peer_by_token(self) -> dict[str, Peer]:
        return {peer.token: peer for peer in self.peers.values()}

    def public_view(self) -> dict:
        """Everything but the secrets: safe to print or put in a bundle."""
        return {
            "stack_dir": self.stack_dir,
            "nats_url": self.nats_url,
            "api_url": self.api_url,
            "effector_url": self.effector_url,
            "monitor_url": self.monitor_url,
            "cells": self.cells,
            "seed": self.seed,
            "jetstream_sync_interval": self.sync_interval,
            "tenants": len(self.tenants),
            "peers": len(self.peers),
            "nodes": len(self.nodes),
            "overrides": dict(self.overrides),
            "defects_injected": list(self.defects),
            "nats_servers": self.nats_servers,
            "nats_cluster": None if self.nats_cluster is None else {
                "name": self.nats_cluster.name, "replicas": self.nats_cluster.replicas,
                "nodes": [node.model_dump(exclude_none=True) for node in self.nats_cluster.nodes]},
            # That access control is on, and for whom; never the secrets themselves.
            "auth": {
                "nats_users": sorted(self.nats_passwords),
                "effector_callers": {"/v1/effects": "cell", "/v1/faults": "harness", "/v1/ledger": "harness"},
                "api": "bearer token per peer, operator token",
            },
        }


EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
LOWEST_PORT = 10000  # below this sit well-known services


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands to outgoing connections (32768 by default on Linux)."""
    try:
        return int(Path(EPHEMERAL_RANGE_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that are free now, chosen below the kernel's ephemeral range.

    Why not bind to 0: the kernel then picks from the ephemeral range, the range it also gives every
    outgoing connection on this host, so between choosing a port and a server binding it, a client
    connection (ours or other work's) may take it, and two calls may return the same port. Each
    candidate is bound and held until all are chosen, so the set is distinct and each was free."""
    rng = secrets.SystemRandom()
    ceiling = max(_ephemeral_floor() - 1, LOWEST_PORT + 1000)
    held: list[socket.socket] = []
    try:
        for _attempt in range(count * 50):
            if len(held) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, rng.randint(LOWEST_PORT, ceiling)))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        if len(held) < count:
            raise ConfigError(f"found only {len(held)} of {count} free ports on {host}")
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """One port that is free now (see ``free_ports``)."""
    return free_ports(1, host)[0]


# The seed's sizes: 10 tenants, 1,000 nodes, 500 peers (the load runs one Locust user per peer).
DEFAULT_TENANTS, DEFAULT_NODES_PER_TENANT, DEFAULT_PEERS_PER_TENANT = 10, 100, 50


def generate(
    stack_dir: Path,
    *,
    tenants: int = DEFAULT_TENANTS,
    nodes_per_tenant: int = DEFAULT_NODES_PER_TENANT,
    peers_per_tenant: int = DEFAULT_PEERS_PER_TENANT,
    cells: int = DEFAULT_CELLS,
    seed: int = 0,
    sync_interval: str = "always",
    overrides: dict[str, float] | None = None,
    defects: list[str] | None = None,
    nats_cluster: int = 1,
) -> StackConfig:
    """A new stack's config; ``nats_cluster`` > 1 gives that many clustered nats-servers."""
    if nats_cluster < 1:
        raise ConfigError(f"nats_cluster must be 1 or more, not {nats_cluster}")
    tenant_ids = [f"tenant-{t:02d}" for t in range(tenants)]
    nodes = {
        f"node-{t * nodes_per_tenant + n:04d}": tenant_ids[t]
        for t in range(tenants)
        for n in range(nodes_per_tenant)
    }
    peers = {}
    for t in range(tenants):
        for p in range(peers_per_tenant):
            peer_id = f"peer-{t * peers_per_tenant + p:03d}"
            peers[peer_id] = Peer(peer_id=peer_id, tenant_id=tenant_ids[t], token=secrets.token_hex(16))
    # All ports at once, so no two components are given the same one.
    ports = iter(free_ports(4 if nats_cluster == 1 else 2 + 3 * nats_cluster))
    cluster = None
    if nats_cluster > 1:
        servers = [NatsNode(name=f"nats-{i}", client_port=next(ports), monitor_port=next(ports),
                            route_port=next(ports)) for i in range(nats_cluster)]
        cluster = NatsCluster(nodes=servers, route_password=secrets.token_hex(16))
    config = StackConfig(
        stack_dir=str(stack_dir),
        nats_port=next(ports) if cluster is None else cluster.nodes[0].client_port,
        nats_monitor_port=next(ports) if cluster is None else cluster.nodes[0].monitor_port,
        api_port=next(ports),
        effector_port=next(ports),
        cells=cells,
        seed=seed,
        sync_interval=sync_interval,
        tenants=tenant_ids,
        nodes=nodes,
        peers=peers,
        operator_token="op-" + secrets.token_hex(16),
        nats_passwords={role: secrets.token_hex(16) for role in NATS_ROLES},
        effector_tokens={role: f"eff-{role}-" + secrets.token_hex(16) for role in EFFECTOR_ROLES},
        overrides=overrides or {},
        defects=defects or [],
        nats_cluster=cluster,
    )
    save(config)
    return config


def save(config: StackConfig) -> None:
    """Write ``stack.json`` (0600) into the stack directory, which only its owner may enter (0700)."""
    path = config.path
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_INDENT_2))


def load(path: Path) -> StackConfig:
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read stack config {path}: {exc.strerror}") from None
    try:
        return StackConfig.model_validate(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"stack config {path} is invalid: {first}") from None


# Well-known ports for a stack whose components run on separate hosts (docker-compose.yml):
# there, each component binds its own container's port, so no free-port probing is needed.
FIXED_PORTS = {"nats_port": 4222, "nats_monitor_port": 8222, "api_port": 8080, "effector_port": 8090}
# A cluster's node i (docker-compose.yml's cluster profile: service ``nats-i``) on these ports + i.
FIXED_CLUSTER_PORTS = {"client_port": 4222, "monitor_port": 8222, "route_port": 6222}


def _fixed_cluster(cluster: NatsCluster) -> NatsCluster:
    """The cluster on ``FIXED_CLUSTER_PORTS``, each node reached at its own name (a compose service)."""
    nodes = [NatsNode(name=node.name, host=node.name, **{key: base + i for key, base in FIXED_CLUSTER_PORTS.items()})
             for i, node in enumerate(cluster.nodes)]
    return cluster.model_copy(update={"nodes": nodes})


def generate_fixed(stack_dir: Path, *, host: str = "0.0.0.0", **generate_kwargs) -> StackConfig:
    """``generate``, but on ``FIXED_PORTS`` and binding ``host`` (``python -m exoarmur init``); a
    cluster's nodes on ``FIXED_CLUSTER_PORTS``, named and reached as ``nats-0`` … ."""
    servers = generate_kwargs.get("nats_cluster", 1)
    ports = [FIXED_PORTS["api_port"], FIXED_PORTS["effector_port"]]
    ports += [base + i for base in FIXED_CLUSTER_PORTS.values() for i in range(servers)]
    if len(set(ports)) != len(ports):
        raise ConfigError(f"a {servers}-server cluster does not fit the well-known ports: two would collide")
    config = generate(stack_dir, **generate_kwargs)
    fixed: dict = dict(FIXED_PORTS)
    if config.nats_cluster is not None:
        cluster = _fixed_cluster(config.nats_cluster)
        first = cluster.nodes[0]
        fixed.update(nats_cluster=cluster.model_dump(), nats_port=first.client_port, nats_monitor_port=first.monitor_port)
    config = StackConfig.model_validate({**config.model_dump(), "host": host, **fixed})
    save(config)
    return config
