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
        return _init(args.config, args.host)
    config = load(args.config)
    if args.component in ("api", "cell", "effector"):
        _tune_gc()
    if args.component == "nats":
        from exoarmur.nats_server import exec_server

        # On a cluster, ``--id i`` is node ``nats-i`` (``LocalStack`` names its children so).
        exec_server(config, None if config.nats_cluster is None else f"nats-{args.id}")
    elif args.component == "api":
        from exoarmur.api import run_api

        run_api(config, nats_url=args.nats_url)
    elif args.component == "cell":
        from exoarmur.cell import run_cell

        run_cell(config, cell_id=f"cell-{args.id}", nats_url=args.nats_url, effector_url=args.effector_url)
    elif args.component == "effector":
        from pathlib import Path

        from exoarmur.effector import run_effector
        from exoarmur.seams import injected

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


def _init(stack_dir: str, host: str) -> int:
    """Once per stack directory on the well-known ports (docker-compose.yml); an existing
    config is kept, so its tokens and the NATS store survive a restart."""
    from pathlib import Path

    from exoarmur.stackconfig import CONFIG_FILE, generate_fixed, load

    config_path = Path(stack_dir)
    config = load(config_path) if (config_path / CONFIG_FILE).exists() else generate_fixed(config_path, host=host)
    sys.stdout.write(orjson.dumps(config.public_view()).decode() + "\n")
    return 0


def _provision(config, nats_url: str | None) -> None:
    """Create or update every stream, consumer and bucket, as the one user allowed to."""
    import asyncio

    from exoarmur.natsio import connect_as, provision, storage
    from exoarmur.seams import injected

    async def provision_once() -> None:
        nc = await connect_as(config, "provisioner", "exoarmur-provision", nats_url)
        try:
            await provision(nc.jetstream(), storage(injected(config.defects)), replicas=config.nats_replicas)
        finally:
            await nc.close()

    asyncio.run(provision_once())


if __name__ == "__main__":
    sys.exit(main())
