"""``aup dashboard``: serve the web dashboard over a database with uvicorn."""

from __future__ import annotations

import ipaddress
import math
import os
import secrets
import socket
from typing import Any

from aup.commands.args import add_db_argument
from aup.errors import UsageError, install_hint

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
TOKEN_ENV = "AUP_DASHBOARD_TOKEN"
#: Shortest ``--refresh`` accepted, in seconds (the pages poll the API at this interval).
MIN_REFRESH = 0.5


def is_loopback(host: str) -> bool:
    """True when ``host`` names only this machine (127.0.0.0/8, ::1, localhost); brackets
    around an IPv6 address are allowed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def choose_token(host: str, token: str | None) -> tuple[str | None, bool]:
    """The token to require and whether it was generated here.

    A token is required when ``host`` is not a loopback address; one is generated when none is
    given. A given token is always used.
    """
    if token:
        return token, False
    if is_loopback(host):
        return None, False
    return secrets.token_urlsafe(24), True


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as err:
            raise UsageError(f"cannot listen on {host}:{port}: {err.strerror}. Fix: choose "
                             "another --port (or --host)") from None


def cmd_dashboard(args: Any) -> int:
    """Serve the dashboard until Ctrl-C."""
    try:
        import uvicorn

        from aup.dashboard.app import create_app
    except ImportError as err:
        raise UsageError(f"the dashboard needs {err.name or 'its web packages'}. Fix: "
                         f"{install_hint('dashboard')}") from None

    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port} is not a port number. Fix: use 1-65535")
    if not (math.isfinite(args.refresh) and args.refresh >= MIN_REFRESH):
        raise UsageError(f"--refresh {args.refresh:g} is not a usable refresh interval: it must "
                         f"be a number of seconds, at least {MIN_REFRESH:g} (faster updates "
                         "would only load the database). Fix: e.g. --refresh 3 (the default)")
    from aup.api import open_existing_store

    token, generated = choose_token(args.host, args.token or os.environ.get(TOKEN_ENV))
    store = open_existing_store(args.db, read_only=True)
    _check_port(args.host, args.port)
    app = create_app(store, token=token, refresh_seconds=args.refresh)
    shown = args.host.strip("[]")
    if shown in ("0.0.0.0", "::"):  # every interface: show a name other machines can use
        shown = socket.gethostname()
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{args.port}/"
    print(f"Auptimizer dashboard for {store._safe_url()}"
          + (" (read-only: this user may not write it, so stop requests are off)"
             if store.read_only else ""))
    if token:
        print(f"open {url}?token={token}")
        if generated:
            print(f"(token generated for this run; set {TOKEN_ENV} or --token to choose one)")
    else:
        print(f"open {url}  (loopback only; Ctrl-C to stop)")
    try:
        uvicorn.run(app, host=args.host.strip("[]"), port=args.port, log_level="warning",
                    access_log=False)
    finally:
        store.close()
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``aup dashboard`` (see :data:`aup.cli.EXTRA_COMMANDS`)."""
    p = subparsers.add_parser(
        "dashboard", help="serve the web dashboard",
        description="Serve a web dashboard over the experiment database: experiment list, "
        "experiment pages with charts, job table and logs, comparisons, stop button; a REST API "
        "at /api (schema at /openapi.json).")
    p.set_defaults(func=cmd_dashboard)
    add_db_argument(p)
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to listen on (default 127.0.0.1; any other address requires "
                   "a token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8000)")
    p.add_argument("--token", help=f"secret every request must carry (default: ${TOKEN_ENV}; "
                   "generated and printed when binding a non-loopback address)")
    p.add_argument("--refresh", type=float, default=3.0,
                   help="seconds between live updates of the pages (default 3, at least "
                   f"{MIN_REFRESH:g})")
