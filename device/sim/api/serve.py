"""`atm-sim api serve` (the HTTP service with its own ISO 8583 host on the bank database,
embedded unless DATABASE_URL) and `atm-sim api create-operator` (an operator who can sign in).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import TextIO

from config.settings import Settings
from host.models import OPERATOR_ROLES

# The rest is imported by the command that needs it: building the parser stays cheap.

PASSWORD_ENV = "ATM_SIM_OPERATOR_PASSWORD"  # noqa: S105 - the variable's name, not a password


def add_api_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `api` sub-command and its actions, for the atm-sim parser."""
    api = sub.add_parser("api", help="the HTTP service on :8000 (bank and ATM lab, /docs)")
    api_sub = api.add_subparsers(dest="api_command", required=True, metavar="ACTION")
    serve = api_sub.add_parser(
        "serve", help="serve the HTTP API, with its own ISO 8583 host on the bank database"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8000, help="HTTP port (default 8000)")
    serve.add_argument(
        "--iso-port", type=_port, default=0, help="ISO 8583 host port (default: a free one)"
    )
    seeding = serve.add_mutually_exclusive_group()
    seeding.add_argument(
        "--seed", action="store_true", help="seed the sample bank even with DATABASE_URL set"
    )
    seeding.add_argument(
        "--no-seed", action="store_true", help="only migrate, even on the embedded database"
    )
    serve.set_defaults(run=_run_serve)
    create = api_sub.add_parser(
        "create-operator",
        help="create an operator who can sign in; the password comes from stdin, "
        f"{PASSWORD_ENV} or a prompt, never from the command line",
    )
    create.add_argument("name", help="operator name (letters, digits, . _ @ -)")
    create.add_argument("--role", choices=OPERATOR_ROLES, default="viewer")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line"
    )
    create.add_argument(
        "--replace", action="store_true", help="give an existing operator a new role/password"
    )
    create.set_defaults(run=_run_create_operator)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return int(text)


def _read_password(args: argparse.Namespace, stdin: TextIO) -> str:
    from host.api.operators import OperatorError

    if args.password_stdin:
        return stdin.readline().rstrip("\r\n")
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not stdin.isatty():
        raise OperatorError(
            f"no password: use --password-stdin, set {PASSWORD_ENV}, or run in a terminal"
        )
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise OperatorError("the two passwords differ; nothing was changed")
    return first


def _run_create_operator(args: argparse.Namespace, settings: Settings) -> int:
    from host import bank_admin
    from host.api.operators import OperatorError, check_new_operator, create_operator
    from host.database import database_url, make_engine

    try:
        password = _read_password(args, sys.stdin)
        check_new_operator(args.name, args.role, password)
    except OperatorError as err:
        print(f"atm-sim: {err}", file=sys.stderr)
        return 2
    bank_admin.upgrade_database(settings)
    engine = make_engine(database_url(settings))
    try:
        done = create_operator(
            engine, settings, args.name, args.role, password, replace=args.replace
        )
        print(done)
    except OperatorError as err:
        print(f"atm-sim: {err}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


def _run_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn
    from prometheus_client import CollectorRegistry

    from device.sim.api.app import create_app
    from host import bank_admin
    from host.api.host_metrics import MeteredAuthoriser
    from host.crypto_keys import mac_key_lookup
    from host.database import database_url, make_engine
    from host.server import HostServer
    from host.service import Bank

    seed = args.seed or (not args.no_seed and not settings.database_url)
    if seed:
        bank_admin.seed_bank(settings)
    else:
        bank_admin.upgrade_database(settings)
    engine = make_engine(database_url(settings))
    host_metrics = CollectorRegistry()
    bank = MeteredAuthoriser(Bank(engine, settings), host_metrics)
    iso = HostServer(bank, mac_key_lookup(engine, settings), port=args.iso_port)
    iso.start()
    try:
        app = create_app(settings, engine=engine, iso_host=("127.0.0.1", iso.port))
        app.state.registry.register(host_metrics)
        docs = "" if settings.environment == "production" else f", docs at {_url(args)}/docs"
        print(f"ISO 8583 host on 127.0.0.1:{iso.port}", flush=True)
        print(f"HTTP API on {_url(args)}{docs}", flush=True)
        # Logging stays as the command line set it up (log_config=None).
        uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    finally:
        iso.stop()
        engine.dispose()
    return 0


def _url(args: argparse.Namespace) -> str:
    host = f"[{args.host}]" if ":" in args.host else args.host
    return f"http://{host}:{args.port}"
