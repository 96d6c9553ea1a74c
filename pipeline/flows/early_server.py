"""A Prefect API server for one `verval run`, booted before the round's own imports.

A plain `verval run` has no Prefect server to talk to, so Prefect would start a temporary
one at the flow's first call: it imports its server package in this process (3 s) and
then waits for a uvicorn subprocess to boot (4-5 s) before the first stage runs. Here the
same subprocess (Prefect's own app factory, as its temporary server runs it) is started
first thing, so it boots while this process imports Prefect, polars and DuckDB; the flow
is then pointed at it with PREFECT_API_URL and this process never imports the server.

When PREFECT_API_URL already names a server (environment or profile), or the subprocess
does not come up, nothing changes: the flow talks to that server, or Prefect starts its
temporary one as before."""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STARTUP_SECONDS = 60


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(port: int) -> list[str]:
    """What Prefect runs for its temporary server (prefect.server.api.server), found
    without importing Prefect."""
    prefect_dir = Path(importlib.util.find_spec("prefect").submodule_search_locations[0])
    return [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent), "--factory",
            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "error", "--lifespan", "on"]


class EarlyServer:
    def __init__(self, command=server_command) -> None:
        self.process: subprocess.Popen | None = None
        self.port = _free_port()
        if os.environ.get("PREFECT_API_URL"):
            return
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        self.process = subprocess.Popen(command(self.port), env=env, stdin=subprocess.DEVNULL)
        # Registered before Prefect is imported, so it runs after Prefect's own exit
        # handlers, which still send the last logs and events to this server.
        atexit.register(self.stop)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _ready(self) -> bool:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    @contextlib.contextmanager
    def serving(self):
        """Inside: Prefect's API is this server, unless a server is configured already or
        this one did not start (then Prefect's own behaviour)."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        if self.process is None or PREFECT_API_URL.value() or not self._ready():
            self.stop()
            yield
            return
        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            yield

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
