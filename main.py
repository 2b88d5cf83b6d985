"""MessagePusher command line: serve (default), check-config, user, key, backup, listen, import.

Every error a user can cause is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from messagepusher.supervisor.config import Settings

EXIT_CONFIG = 2
EXIT_INSTALL = 3
REPO = Path(__file__).resolve().parent
log = logging.getLogger("messagepusher")


def install_problem() -> str | None:
    """One line naming a missing package and the command that installs it, or None.

    Runs in the main thread before any dependency is imported, so a broken install is one
    line and an exit, not a traceback or a server whose actors can never start.
    """
    try:
        from messagepusher.supervisor.install_check import problem
    except ModuleNotFoundError as exc:
        lock = REPO / "requirements.lock"
        fix = f"{sys.executable} -m pip install {f'-c {lock} ' if lock.is_file() else ''}{REPO}"
        if exc.name == "messagepusher.supervisor.install_check":
            return f"error: the messagepusher installed in {sys.executable} is older than {REPO}; reinstall it with: {fix}"
        return f"error: package 'messagepusher' is not installed in {sys.executable}; install it with: {fix}"
    return problem(REPO)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=argparse.SUPPRESS, help="path to supervisor.yaml (or MP_CONFIG)"
    )
    parser = argparse.ArgumentParser(prog="main.py", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", parents=[common], help="run the service (the default)")
    serve.add_argument(
        "--processes",
        default=argparse.SUPPRESS,
        help="worker processes under a root (server.processes; 0: one per CPU core)",
    )
    sub.add_parser(
        "check-config", parents=[common], help="validate and print the effective configuration"
    )

    user = sub.add_parser("user", parents=[common], help="manage users").add_subparsers(
        dest="action", required=True
    )
    create = user.add_parser("create", parents=[common], help="create a user")
    create.add_argument("name")
    create.add_argument("--role", choices=["admin", "user"], default="user")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )

    key = sub.add_parser("key", parents=[common], help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    key_create = key.add_parser("create", parents=[common], help="create an API key, printed once")
    key_create.add_argument("--user", required=True)
    key_create.add_argument("--name", default="")
    key_create.add_argument(
        "--scopes", default=None, help="comma-separated, e.g. messages:send,messages:read"
    )

    backup = sub.add_parser("backup", parents=[common], help="online backups").add_subparsers(
        dest="action", required=True
    )
    backup.add_parser("create", parents=[common], help="take a backup now")
    backup.add_parser("list", parents=[common], help="list backups")
    restore = backup.add_parser(
        "restore", parents=[common], help="restore a backup (the service must be stopped)"
    )
    restore.add_argument("name")

    listen = sub.add_parser(
        "listen", parents=[common], help="print your client-channel messages as they arrive"
    )
    listen.add_argument("--key", required=True, help="an API key with messages:read")
    listen.add_argument("--url", default=None, help="the server (default: server.host and port)")
    listen.add_argument("--channel", default=None, help="only this client channel (by name)")
    listen.add_argument("--state", default=None, help="keep the last event id in this file")
    listen.add_argument("--count", type=int, default=0, help="exit after this many messages")

    imports = sub.add_parser("import", parents=[common], help="import another service's data")
    importer = imports.add_subparsers(dest="source", required=True)
    mp = importer.add_parser(
        "message-pusher", parents=[common], help="songquanpeng/message-pusher's SQLite database"
    )
    mp.add_argument("path", help="its SQLite file, e.g. data/message-pusher.db")
    mp.add_argument("--dry-run", action="store_true", help="print the mapping, change nothing")
    mp.add_argument("--with-messages", action="store_true", help="also import its message history")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    from messagepusher.supervisor.config import load_settings

    processes = getattr(args, "processes", None)
    overrides = {"server": {"processes": processes}} if processes is not None else None
    return load_settings(getattr(args, "config", None), overrides=overrides)


def _open(settings: Settings):
    from messagepusher.accounts.users import open_accounts
    from messagepusher.supervisor.runtime import Runtime

    runtime = Runtime(settings)
    runtime.open_storage()
    generated = open_accounts(runtime)
    if generated:
        print(
            f"first start: created user admin with password {generated} (shown once)",
            file=sys.stderr,
        )
    return runtime


def cmd_check_config(settings: Settings) -> int:
    from messagepusher.supervisor.config import masked

    effective = masked(settings.model_dump())
    effective["database"]["url"] = masked({"u": settings.database_url})["u"]
    print(json.dumps(effective, indent=2, ensure_ascii=False))
    return 0


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    from messagepusher.accounts.users import AccountError, create_user

    runtime = _open(settings)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
    try:
        user = create_user(args.name, password, role=args.role)
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        runtime.db.close()
    print(f"created user {user.username} (id {user.id}, role {user.role})")
    return 0


def cmd_key(args: argparse.Namespace, settings: Settings) -> int:
    from messagepusher.accounts.users import AccountError, create_key
    from messagepusher.supervisor.models import User

    runtime = _open(settings)
    try:
        user = User.get_or_none(User.username == args.user)
        if user is None:
            print(
                f"error: no user {args.user!r}; create it with: main.py user create {args.user}",
                file=sys.stderr,
            )
            return 1
        scopes = args.scopes.split(",") if args.scopes is not None else None
        row, plaintext = create_key(user, name=args.name, scopes=scopes)
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        runtime.db.close()
    print(
        f"created key {row.id} for {user.username} with scopes {','.join(row.scopes)}; it is shown only now:"
    )
    print(plaintext)
    return 0


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from messagepusher.operations import backups

    runtime = _open(settings)
    try:
        if args.action == "create":
            info = backups.create_backup(runtime)
            print(f"created {info['name']} ({info['bytes']} bytes)")
        elif args.action == "list":
            for info in backups.list_backups(runtime):
                print(f"{info['name']}\t{info['bytes']}\t{info['created_at']}")
        else:
            runtime.db.close()
            backups.restore_backup_offline(runtime, args.name)
            print(f"restored {args.name}")
    except backups.BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        runtime.db.close()
    return 0


def cmd_listen(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from messagepusher.operations.listen import Listener, ListenError

    url = args.url or f"http://{settings.server.host}:{settings.server.port}"
    state = Path(args.state) if args.state else None
    listener = Listener(url, args.key, sys.stdout, args.channel, state, args.count)
    try:
        return listener.run()
    except ListenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from messagepusher.operations.mp_import import SourceError, run_import

    runtime = _open(settings)
    try:
        return run_import(runtime, args.path, args.dry_run, args.with_messages, sys.stdout)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        runtime.db.close()


def cmd_serve(settings: Settings, config_path: str | None) -> int:
    """Main thread: the composition root. It alone joins the layers: the runtime
    (supervisor/), the actors' ingest client and the HTTP server on top."""
    from messagepusher.accounts.users import open_accounts
    from messagepusher.actors.ingest import IngestClient
    from messagepusher.operations.backups import BackupError, hold_serving_lock
    from messagepusher.supervisor import logs, sd_notify
    from messagepusher.supervisor.nodes import NodeRegistry, actor_components
    from messagepusher.supervisor.runtime import Runtime
    from messagepusher.supervisor.worker_link import WorkerLink

    logs.configure(settings.logging, settings.data_path)
    try:
        link = WorkerLink.from_environ(settings.faults)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    try:
        serving_lock = hold_serving_lock(
            settings
        )  # held until we stop: offline restores wait for it
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    runtime = Runtime(settings, config_path)
    runtime.ingest = IngestClient(runtime)
    runtime.open_storage()
    generated = open_accounts(runtime)
    if generated:
        print(
            f"first start: created user admin with password {generated} (shown once)",
            file=sys.stderr,
            flush=True,
        )
    if link is None and settings.server.processes != 1:
        from messagepusher.supervisor.processes import run_root
        from messagepusher.supervisor.runtime_config import RuntimeConfig

        runtime.runtime_config = RuntimeConfig(runtime)
        code = run_root(runtime, config_path, Path(__file__).resolve())
        runtime.db.close()
        if serving_lock is not None:
            serving_lock.close()
        log.info("root stopped (exit %d)", code)
        return code

    def request_stop(signum, _frame):
        log.info("received %s: stopping", signal.Signals(signum).name)
        runtime.shutdown_requested.set()

    def request_reload(_signum, _frame):
        threading.Thread(target=runtime.reload_file, name="reload", daemon=True).start()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, request_reload)
    if link is not None:
        sd_notify.set_forwarder(link.send)
        link.watch_root(runtime.shutdown_requested.set)
        runtime.listen_socket = link.listening_socket()

    from messagepusher.http.server import HttpServer

    runtime.start_operations()
    runtime.start_actors()
    runtime.http_server = HttpServer(runtime)
    runtime.http_server.start()
    if link is None:
        log.info(
            "listening on http://%s:%d (data in %s)",
            settings.server.host,
            runtime.http_server.port,
            settings.data_path.resolve(),
        )
    else:
        log.info("worker %d serving on port %d", link.spec.slot, runtime.http_server.port)
    if not runtime.wait_for_actors(30.0):
        log.error("not every actor is running 30s after start; see GET /readyz")
    sd_notify.notify(
        f"READY=1\nSTATUS=listening on {settings.server.host}:{runtime.http_server.port}"
    )
    registry = NodeRegistry(
        runtime,
        "worker" if link else "single",
        link.spec.slot if link else 0,
        lambda: actor_components(runtime),
    ).start()
    while not runtime.shutdown_requested.wait(0.25 if link else 0.5):
        if link is not None:
            link.beat()
    if runtime.exit_code:
        log.critical("escalating: %s", runtime.exit_reason)
    orphaned = link is not None and link.orphaned.is_set()
    if not orphaned:
        registry.stop()
    runtime.stop(
        min(settings.shutdown_grace_seconds, 1.0) if orphaned else settings.shutdown_grace_seconds
    )
    if serving_lock is not None:
        serving_lock.close()
    log.info("stopped (exit %d)", runtime.exit_code)
    return runtime.exit_code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    problem = install_problem()
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_INSTALL
    if os.environ.get("MP_PROCESS_ZYGOTE"):
        from messagepusher.supervisor.zygote import ZYGOTE_ENV, run_zygote

        try:
            run_zygote(os.environ[ZYGOTE_ENV])  # returns only in a forked worker, serving below
        except ValueError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_CONFIG
    from messagepusher.supervisor.config import ConfigError

    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    command = args.command or "serve"
    if command == "check-config":
        return cmd_check_config(settings)
    if command == "user":
        return cmd_user(args, settings)
    if command == "key":
        return cmd_key(args, settings)
    if command == "backup":
        return cmd_backup(args, settings)
    if command == "listen":
        return cmd_listen(args, settings)
    if command == "import":
        return cmd_import(args, settings)
    return cmd_serve(settings, getattr(args, "config", None))


if __name__ == "__main__":
    sys.exit(main())
