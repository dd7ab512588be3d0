"""The operator as a child process (its real CLI), for tests and the demo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from elasticsan_snapshotter.local_cluster.cluster import ClusterError, free_port


class OperatorProcess:
    """``elasticsan-snapshotter operator`` with the given environment; ready when /healthz answers."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 60.0,
        python: str = sys.executable,
    ) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.extra_args = extra_args
        self.startup_timeout = startup_timeout
        self.python = python
        """The interpreter to run it with (another virtual environment, e.g. without test libraries)."""
        self.health_port = 0
        self.metrics_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> OperatorProcess:
        self.health_port, self.metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            **self.env,
            "ESS_HEALTH_PORT": str(self.health_port),
            "ESS_METRICS_PORT": str(self.metrics_port),
        }
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [self.python, "-m", "elasticsan_snapshotter", "operator", *self.extra_args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + self.startup_timeout
        while not self._healthy():
            if self._process.poll() is not None:
                raise ClusterError(
                    f"the operator exited with status {self._process.returncode}; see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"the operator was not healthy in {self.startup_timeout:.0f}s; see {self.log_path}"
                )
            time.sleep(0.2)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as when a node dies."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._close_log()

    def stop(self, timeout: float = 20.0) -> int | None:
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._close_log()
        return self._process.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
