"""``python -m exoarmur provision`` on a 3-node cluster, run the way docker-compose's cluster profile
runs it (``cluster-provision``: its own process, the whole server list in ``--nats-url``): on servers
just started, and again on the same servers SIGKILLed and restarted on their stores, it exits 0
and leaves every stream and bucket on 3 replicas. Real nats-servers, no mocks.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from exoarmur import natsio, stackconfig
from exoarmur.natsio import wait_for_port
from exoarmur_cli import topology
from exoarmur_cli.stack import LocalStack

pytestmark = pytest.mark.integration

COMMAND_TIMEOUT_S = 120.0  # above the command's own 60 s retry bound and its connect wait
LEADERS_WITHIN_S = 30.0  # as the embedded stack waits (topology.FORM_TIMEOUT_S)


@pytest.fixture
def servers(tmp_path):
    """Three clustered nats-servers, started and nothing else: no provisioning."""
    config = stackconfig.generate(tmp_path / "stack", nats_cluster=3, tenants=1, nodes_per_tenant=1,
                                  peers_per_tenant=1)
    stack = LocalStack(config)
    try:
        _start_servers(stack)
        yield stack
    finally:
        stack.stop()


def _start_servers(stack: LocalStack) -> None:
    for name in stack.config.nats_component_names():
        stack.children[name].start()
    for node in stack.config.nats_cluster.nodes:
        assert wait_for_port(stack.config.host, node.client_port, 10.0), node.name


def _provision_command(config: stackconfig.StackConfig) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "exoarmur", "provision", "--config", config.stack_dir, "--nats-url", config.nats_url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


async def _replicas(config: stackconfig.StackConfig) -> tuple[dict[str, int], float]:
    """Each stream's and the consumer's replica count, once each has a leader (a restarted cluster
    elects them after provisioning returns), and how long that took."""
    nc = await natsio.connect_as(config, "harness", "test-provision-observer")
    try:
        js = nc.jetstream(timeout=2.0)
        elected_s = await topology.wait_stream_leaders(nc.jetstream(timeout=1.0), LEADERS_WITHIN_S)
        out = {name: (await js.stream_info(name)).config.num_replicas for name in topology.STREAMS}
        consumer = await js.consumer_info(natsio.INTENTS_STREAM, natsio.CELLS_CONSUMER)
        out[natsio.CELLS_CONSUMER] = consumer.config.num_replicas or out[natsio.INTENTS_STREAM]
        return out, elected_s
    finally:
        await nc.close()


async def test_provision_command_on_a_fresh_and_a_restarted_cluster(servers):
    config = servers.config
    assert "," in config.nats_url and len(config.nats_servers) == 3

    fresh = _provision_command(config)
    assert fresh.returncode == 0, fresh.stderr
    want = {name: 3 for name in [*topology.STREAMS, natsio.CELLS_CONSUMER]}
    replicas, fresh_elected_s = await _replicas(config)
    assert replicas == want

    for name in config.nats_component_names():
        servers.children[name].kill()
    _start_servers(servers)
    restarted = _provision_command(config)
    assert restarted.returncode == 0, restarted.stderr
    replicas, restarted_elected_s = await _replicas(config)
    assert replicas == want
    print(f"\nprovision retries: fresh {fresh.stderr.count('trying again')}, after a whole-cluster "
          f"SIGKILL {restarted.stderr.count('trying again')}; every stream led {fresh_elected_s:.1f} s / "
          f"{restarted_elected_s:.1f} s after the command exited")
