"""``python -m exoarmur <component> --config STACK_DIR``: one entry point per stack process."""

from __future__ import annotations

import argparse
import sys

import orjson

from exoarmur.errors import ExoError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exoarmur")
    parser.add_argument("component", choices=["nats", "api", "cell", "effector", "provision", "policy", "init"])
    parser.add_argument("--config", help="stack directory or its stack.json")
    parser.add_argument("--id", default="0", help="instance id (cells)")
    parser.add_argument("--nats-url", help="override: reach NATS here (e.g. through a fault proxy)")
    parser.add_argument("--effector-url", help="override: reach the effector here")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--host", default="0.0.0.0", help="init: address the components bind")
    parser.add_argument("--nats-cluster", type=int, default=None, metavar="N",
                        help="init: N clustered nats-servers nats-0 … (default 1: one server, nats); "
                             "node i on ports 4222+i, 8222+i (monitor), 6222+i (routes), reached at its name")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except ExoError as exc:
        print(f"exoarmur {args.component}: {exc.reason_code.value}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _tune_gc() -> None:
    """Long-lived services: move start-up objects out of the collector's way and collect the
    young generation less often; the collector's pauses were the tail of the latency."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _run(args: argparse.Namespace) -> int:
    if args.component == "policy":
        return _print_policy(args.json)

    from exoarmur.errors import ConfigError
    from exoarmur.stackconfig import load

    if not args.config:
        raise ConfigError("--config STACK_DIR is required")
    if args.component == "init":
        return _init(args.config, args.host, args.nats_cluster)
    config = load(args.config)
    if args.component == "nats":
        from exoarmur.nats_server import exec_server

        # On a cluster, ``--id i`` is node ``nats-i`` (``LocalStack`` names its children so).
        exec_server(config, None if config.nats_cluster is None else f"nats-{args.id}")
    elif args.component == "api":
        from exoarmur.api import run_api

        _tune_gc()  # after the imports: the frameworks' objects are start-up objects too
        run_api(config, nats_url=args.nats_url)
    elif args.component == "cell":
        from exoarmur.cell import run_cell

        _tune_gc()
        run_cell(config, cell_id=f"cell-{args.id}", nats_url=args.nats_url, effector_url=args.effector_url)
    elif args.component == "effector":
        from pathlib import Path

        from exoarmur.effector import run_effector

        _tune_gc()
        ledger = Path(config.ledger_dir or config.stack_dir) / "effector-ledger.db"
        run_effector(config.host, config.effector_port, str(ledger), config.seed, config.effector_tokens, config.defects)
    elif args.component == "provision":
        _provision(config, args.nats_url)
    return 0


def _print_policy(as_json: bool) -> int:
    from exoarmur.reliability import all_policy_tables

    tables = all_policy_tables()
    if as_json:
        sys.stdout.write(orjson.dumps(tables, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        for name, rows in tables.items():
            print(f"[{name}]")
            for row in rows:
                print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
    return 0


def _init(stack_dir: str, host: str, nats_cluster: int | None) -> int:
    """Once per stack directory on the well-known ports (docker-compose.yml); an existing
    config is kept, so its tokens and the NATS store survive a restart. ``nats_cluster``: that
    many clustered servers, each reached at its name (a compose service: ``nats-0`` …)."""
    from pathlib import Path

    from exoarmur.errors import ConfigError
    from exoarmur.stackconfig import CONFIG_FILE, generate_fixed, load

    if nats_cluster is not None and nats_cluster < 1:
        raise ConfigError(f"--nats-cluster must be 1 or more, not {nats_cluster}")
    config_path = Path(stack_dir)
    if (config_path / CONFIG_FILE).exists():
        config = load(config_path)
        if nats_cluster is not None and config.nats_replicas != nats_cluster:
            raise ConfigError(f"{config.path} is a stack with {config.nats_replicas} NATS server(s), not the "
                              f"{nats_cluster} --nats-cluster asks for: use another directory")
    else:
        config = generate_fixed(config_path, host=host, nats_cluster=1 if nats_cluster is None else nats_cluster)
    sys.stdout.write(orjson.dumps(config.public_view()).decode() + "\n")
    return 0


# On a cluster (re)started on its stores, the streams recover first and a create may miss its
# deadline meanwhile: tried again within this bound (``LocalStack.provision`` does the same).
PROVISION_RETRY_S = 60.0


def _provision(config, nats_url: str | None) -> None:
    """Create or update every stream, consumer and bucket, as the one user allowed to."""
    import asyncio
    import time

    from exoarmur.natsio import connect_as, provision, storage
    from exoarmur.seams import injected

    async def provision_once() -> None:
        nc = await connect_as(config, "provisioner", "exoarmur-provision", nats_url)
        began = time.monotonic()
        try:
            while True:
                try:
                    return await provision(nc.jetstream(), storage(injected(config.defects)),
                                           replicas=config.nats_replicas)
                except ExoError as exc:
                    if config.nats_cluster is None or time.monotonic() - began > PROVISION_RETRY_S:
                        raise
                    print(f"exoarmur provision: {exc.reason_code.value}: {exc}; trying again", file=sys.stderr)
                    await asyncio.sleep(0.5)
        finally:
            await nc.close()

    asyncio.run(provision_once())


if __name__ == "__main__":
    sys.exit(main())
