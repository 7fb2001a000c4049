"""Starting the stack when a nats-server cannot: the error names why, at once, from the server's log."""

from __future__ import annotations

import socket
import time

import pytest

from exoarmur import stackconfig
from exoarmur_cli.errors import StackError
from exoarmur_cli.stack import LocalStack

pytestmark = pytest.mark.integration


def test_a_nats_server_that_exits_is_reported_at_once_with_its_log(tmp_path):
    config = stackconfig.generate(tmp_path / "stack", tenants=1, nodes_per_tenant=1, peers_per_tenant=1)
    stack = LocalStack(config)
    with socket.socket() as squatter:  # the port was taken after it was chosen (bound, not listening)
        squatter.bind((config.host, config.nats_port))
        began = time.monotonic()
        try:
            with pytest.raises(StackError) as caught:
                stack.start_component("nats")
        finally:
            stack.stop()
    assert time.monotonic() - began < 8.0  # not the 10 s wait for a port that will never open
    assert "nats exited" in str(caught.value)
    assert "address already in use" in str(caught.value)
