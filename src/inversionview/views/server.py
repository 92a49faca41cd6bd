"""Starting the web page: its settings, the checks before the server starts, and the launch.

The page (``views/app.py``) runs in its own Streamlit process; it gets its settings from one
environment variable, written and read here, so that nothing else parses it.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inversionview import bundled
from inversionview.errors import UserError
from inversionview.probed.source import ProbedSource

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
    corpus: dict = field(default_factory=dict)
    """``ProbedModel.use_corpus`` options for ``probed``, a free-text model (none: no corpus)."""

    @classmethod
    def of(cls, source: ProbedSource, decoder: str | None = None, models_dir: Path | None = None) -> ViewerSettings:
        """The page's settings for a probed model named on the command line: it is listed when an
        option names it (``probed``, a decoder or a corpus), beside the bundled models and ``models_dir``'s."""
        if models_dir is not None and not models_dir.is_dir():
            raise UserError(f"`models_dir` {models_dir} is not a directory")
        named = source.probed is not None or decoder is not None or bool(source.corpus_options())
        folder = str(models_dir.resolve()) if models_dir is not None else None
        options = {"load_options": source.load_options(), "corpus": source.corpus_options()}
        return cls(probed=source.name if named else None, decoder=decoder, models_dir=folder, **options)

    def to_environment(self) -> dict[str, str]:
        return {SETTINGS_VARIABLE: json.dumps(asdict(self))}

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> ViewerSettings:
        text = (os.environ if environ is None else environ).get(SETTINGS_VARIABLE)
        return cls(**json.loads(text)) if text else cls()


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the page's model list. Defined here, not in the page's script, which Streamlit
    runs afresh on every interaction: a class defined there would be a new class each run, and the
    readings cached under the last run's choices would never be found again."""

    label: str
    probed: str
    decoder: str | None
    options: tuple[tuple[str, object], ...] = ()
    """``load_probed`` options, as (name, value) pairs so that the choice stays hashable."""
    corpus: tuple[tuple[str, object], ...] = ()
    """``ProbedModel.use_corpus`` options, as pairs: where a free-text model's examples come from."""


def model_choices(settings: ViewerSettings) -> list[ModelChoice]:
    """Bundled models with a decoder, the command line's model, and those in the models folder."""
    choices = []
    options = settings.load_options
    if settings.probed:
        label = f"command line: {settings.probed}"
        pairs = tuple(sorted(options.items())), tuple(sorted(settings.corpus.items()))
        choices.append(ModelChoice(label, settings.probed, settings.decoder, *pairs))
    device = (("device", options["device"]),) if "device" in options else ()
    for name in sorted(bundled.probed_names(), key=lambda n: (n != bundled.DEFAULT, n)):  # the first case study first
        if bundled.decoder_dir(name) is not None and bundled.installed(name):
            choices.append(ModelChoice(f"bundled: {name}", name, None, device))
    folder = settings.models_dir
    if folder and Path(folder).is_dir():
        for sub in sorted(Path(folder).iterdir()):
            if (sub / "probed").is_dir() and (sub / "decoder").is_dir():
                label, probed, decoder = f"models folder: {sub.name}", str(sub / "probed"), str(sub / "decoder")
                choices.append(ModelChoice(label, probed, decoder, device))
    return choices


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
    port that is taken.

    Args:
        host: The address to serve on (127.0.0.1: this machine only).
        port: The port.
        allow_remote: Permit a `host` other machines can reach.
    """
    if not is_loopback(host) and not allow_remote:
        raise UserError(
            f"refusing to serve on {host}: the page would be reachable from other machines; "
            "add `allow_remote` if you mean it"
        )
    if port_in_use(host, port):
        raise UserError(f"port {port} on {host} is in use; pick another `port`")


STOP_GRACE_SECONDS = 3.0
"""How long the server gets to stop on SIGTERM before it is killed."""


def serve(settings: ViewerSettings, *, host: str = "127.0.0.1", port: int = 8501, threads: int | None = None) -> None:
    """Run the page's server until it is stopped (Ctrl-C or SIGTERM), then stop it and everything it
    started, freeing the port. A server that fails is a UserError that points at its own messages."""
    env = {**os.environ, **settings.to_environment()}
    if threads is not None:  # the page runs in its own process; torch reads this at start-up
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "streamlit", "run", str(APP)]
    command += ["--server.address", host, "--server.port", str(port), "--server.headless", "true"]
    command += ["--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]  # no Deploy button
    # Its own process group: the server and whatever it starts are stopped together, by us; and
    # should we be killed outright (SIGKILL), the server goes with us instead of holding the port.
    server = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_dies_with(os.getpid()))
    try:
        with _stop_signals_as_interrupt():
            status = server.wait()
    except KeyboardInterrupt:
        stop_process_group(server)
        return
    if status not in (0, -signal.SIGINT, -signal.SIGTERM):  # stopped by hand is not a failure
        raise UserError(f"the page's server stopped with status {status}; its messages are above")


PR_SET_PDEATHSIG = 1
"""Linux's prctl option: a signal the kernel sends a process when its parent dies."""


def _dies_with(parent: int):
    """For ``Popen(preexec_fn=…)``: the child is killed when ``parent`` dies, however it dies (on
    Linux; elsewhere a no-op). SIGKILL, since the Streamlit server ignores SIGTERM."""

    def setup() -> None:
        if not sys.platform.startswith("linux"):
            return
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the signal was set: nobody would send it
            os._exit(1)

    return setup


def stop_process_group(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM to the process's whole group, then SIGKILL to what is left of it after ``grace``
    seconds (or at once, once the process itself has ended)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@contextmanager
def _stop_signals_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM (``kill PID``) and SIGINT (Ctrl-C) stop the wait, even where the shell
    that started us ignores SIGINT (a background job); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
