"""``python -m exoarmur_cli.bench_bare api|effector|cell --config STACK_DIR --port P ...``: one bare process."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exoarmur_cli.bench_bare")
    parser.add_argument("role", choices=["api", "effector", "cell"])
    parser.add_argument("--config", required=True, help="the stack directory (its NATS and credentials)")
    parser.add_argument("--port", type=int, default=0, help="api, effector: the port to serve on")
    parser.add_argument("--id", default="0", help="cell: its number")
    parser.add_argument("--effector-url", default="", help="cell: the bare effector")
    args = parser.parse_args(argv)

    from exoarmur.stackconfig import load
    from exoarmur_cli.bench_bare._common import tune_gc

    config = load(args.config)
    tune_gc()
    try:
        if args.role == "api":
            from exoarmur_cli.bench_bare import _api

            _api.run(config, args.port)
        elif args.role == "effector":
            from exoarmur_cli.bench_bare import _effector

            _effector.run(config.host, args.port)
        else:
            from exoarmur_cli.bench_bare import _cell

            _cell.run(config, f"cell-{args.id}", args.effector_url)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
