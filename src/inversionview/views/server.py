"""Starting the web page: its settings, the checks before the server starts, and the launch.

The page (``views/app.py``) runs in its own Streamlit process; it gets its settings from one
environment variable, written and read here, so that nothing else parses it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inversionview.errors import UserError

SETTINGS_VARIABLE = "INVERSIONVIEW_VIEWER"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
APP = Path(__file__).parent / "app.py"


@dataclass(frozen=True)
class ViewerSettings:
    """What the page offers: the bundled models, a model named on the command line, and the runs in
    a models folder."""

    probed: str | None = None
    """A probed model given on the command line (listed first), with ``decoder`` (None: bundled)."""
    decoder: str | None = None
    load_options: dict = field(default_factory=dict)
    """``load_probed`` options for ``probed`` (``device`` applies to every model)."""
    models_dir: str | None = None
    """A folder whose sub-folders each hold ``probed/`` and ``decoder/``."""

    def to_environment(self) -> dict[str, str]:
        return {SETTINGS_VARIABLE: json.dumps(asdict(self))}

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> ViewerSettings:
        text = (os.environ if environ is None else environ).get(SETTINGS_VARIABLE)
        return cls(**json.loads(text)) if text else cls()


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1 or localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def port_in_use(host: str, port: int) -> bool:
    """Whether a server already listens on ``host``:``port`` (bound the way the page's server binds)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def check_address(host: str, port: int, *, allow_remote: bool = False) -> None:
    """Refuse, before anything starts, an address other machines can reach (unless allowed) or a
    port that is taken."""
    if not is_loopback(host) and not allow_remote:
        raise UserError(
            f"refusing to serve on {host}: the page would be reachable from other machines; "
            "add --allow-remote if you mean it"
        )
    if port_in_use(host, port):
        raise UserError(f"port {port} on {host} is in use; pick another with --port")


def serve(settings: ViewerSettings, *, host: str = "127.0.0.1", port: int = 8501, threads: int | None = None) -> None:
    """Run the page's server until it is stopped (Ctrl-C). A server that fails is a UserError that
    points at its own messages."""
    env = {**os.environ, **settings.to_environment()}
    if threads is not None:  # the page runs in its own process; torch reads this at start-up
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "streamlit", "run", str(APP)]
    command += ["--server.address", host, "--server.port", str(port), "--server.headless", "true"]
    command += ["--browser.gatherUsageStats", "false"]
    try:
        status = subprocess.run(command, env=env, check=False).returncode
    except KeyboardInterrupt:
        return
    if status not in (0, -signal.SIGINT, -signal.SIGTERM):  # stopped by hand is not a failure
        raise UserError(f"the page's server stopped with status {status}; its messages are above")
