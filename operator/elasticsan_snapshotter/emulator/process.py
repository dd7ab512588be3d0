"""Run the emulator as a child process, for tests and demos.

    with EmulatorProcess(tmp_path / "emulator") as emulator:
        info = emulator.info            # endpoint, authority, ca_cert, ids and secrets
        emulator.admin.reset_counters()
        ...                             # drive the real SDKs against info.endpoint
        assert emulator.admin.count(method="PUT", kind="volumeSnapshots") == 1
        emulator.restart()              # same state directory; the port may change

Standard library only, so it can be used where the emulator's own dependencies are absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

MANAGEMENT_SCOPE = "https://management.azure.com/.default"


class EmulatorError(RuntimeError):
    """The emulator did not start, stopped unexpectedly, or an admin call failed."""


@dataclass(frozen=True)
class EmulatorInfo:
    """The JSON line the emulator prints when it is ready."""

    endpoint: str
    authority: str
    ca_cert: str
    subscription_id: str
    tenant_id: str
    client_id: str
    client_secret: str
    reader_client_id: str
    reader_client_secret: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, line: str) -> EmulatorInfo:
        data = json.loads(line)
        return cls(
            endpoint=data["endpoint"],
            authority=data["authority"],
            ca_cert=data["ca_cert"],
            subscription_id=data["subscription_id"],
            tenant_id=data["tenant_id"],
            client_id=data["client_id"],
            client_secret=data["client_secret"],
            reader_client_id=data["reader_client_id"],
            reader_client_secret=data["reader_client_secret"],
            raw=data,
        )

    @property
    def port(self) -> int:
        return int(urllib.parse.urlsplit(self.endpoint).port or 443)


class AdminClient:
    """The emulator's ``/_emulator`` API; it authenticates like any client (client secret)."""

    def __init__(self, info: EmulatorInfo, *, timeout: float = 10.0) -> None:
        self.info = info
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=info.ca_cert)
        self._token: str | None = None
        self._token_expiry = 0.0

    def token(self, *, client_id: str | None = None, client_secret: str | None = None) -> tuple[str, int]:
        """Fetch a fresh access token (and its lifetime) from the emulator's token endpoint."""
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": client_id or self.info.client_id,
                "client_secret": client_secret or self.info.client_secret,
                "scope": MANAGEMENT_SCOPE,
            }
        ).encode()
        url = f"{self.info.authority}/{self.info.tenant_id}/oauth2/v2.0/token"
        request = urllib.request.Request(url, data=form, method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        status, body = self._send(request)
        if status != 200:
            raise EmulatorError(f"token request failed with {status}: {body}")
        return str(body["access_token"]), int(body["expires_in"])

    def _bearer(self) -> str:
        if self._token is None or time.monotonic() >= self._token_expiry:
            token, lifetime = self.token()
            self._token = token
            # Renew a little early so that a token never expires between check and use.
            self._token_expiry = time.monotonic() + max(0.0, lifetime - min(30.0, lifetime / 2))
        return self._token

    def _send(self, request: urllib.request.Request) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl) as response:
                raw = response.read()
                return int(response.status), json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return int(error.code), json.loads(raw) if raw else None
            except ValueError:
                return int(error.code), raw.decode(errors="replace")

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Call an admin endpoint (``path`` relative to ``/_emulator``) and return its JSON."""
        for attempt in (1, 2):
            data = json.dumps(body).encode() if body is not None else None
            request = urllib.request.Request(
                f"{self.info.endpoint}/_emulator/{path.lstrip('/')}", data=data, method=method
            )
            request.add_header("Authorization", f"Bearer {self._bearer()}")
            if data is not None:
                request.add_header("Content-Type", "application/json")
            status, answer = self._send(request)
            if status == 401 and attempt == 1:
                # The token was revoked or the emulator restarted without it: fetch a new one.
                self._token = None
                continue
            if status >= 400:
                raise EmulatorError(f"{method} /_emulator/{path} failed with {status}: {answer}")
            return answer
        raise AssertionError("unreachable")

    # Convenience ----------------------------------------------------------------------

    def counters(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "counters")["requests"])

    def count(self, *, method: str | None = None, kind: str | None = None, status: int | None = None) -> int:
        """Requests seen since the last reset that match every given field."""
        return sum(
            int(entry["count"])
            for entry in self.counters()
            if (method is None or entry["method"] == method.upper())
            and (kind is None or entry["kind"] == kind)
            and (status is None or entry["status"] == status)
        )

    def reset_counters(self) -> None:
        self.request("POST", "counters/reset")

    def set_written(self, volume_id: str, written_gib: int) -> None:
        """Declare how many GiB of a volume changed since its last snapshot."""
        self.request("POST", "written", {"volumeId": volume_id, "writtenGiB": written_gib})

    def iscsi_login(self, iqn: str, portal: str | None = None) -> dict[str, Any]:
        """The backing file of the volume behind an iSCSI target: ``{"volumeId", "path", "sizeBytes"}``."""
        body = {"targetIqn": iqn} | ({"targetPortal": portal} if portal else {})
        return dict(self.request("POST", "iscsi/login", body))

    def set_faults(
        self,
        spec: str | None = None,
        *,
        rules: Sequence[Mapping[str, Any]] = (),
        latency_ms: int = 0,
        seed: int | None = None,
    ) -> Any:
        body: dict[str, Any] = {"seed": seed} if seed is not None else {}
        if spec is not None:
            return self.request("PUT", "faults", {"spec": spec, **body})
        rules_body = {"latency_ms": latency_ms, "rules": [dict(r) for r in rules]}
        return self.request("PUT", "faults", {**rules_body, **body})

    def clear_faults(self) -> None:
        self.request("DELETE", "faults")

    def update_settings(self, **settings: float) -> dict[str, Any]:
        """Change settings at runtime, e.g. ``lroSeconds=2`` or ``exportSeconds=0``."""
        return dict(self.request("PATCH", "settings", settings))

    def revoke_tokens(self) -> int:
        self._token = None
        revoked = int(self.request("POST", "tokens/revoke")["revoked"])
        self._token = None
        return revoked

    def resources(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "resources")["value"])


class EmulatorProcess:
    """Start, stop and restart ``elasticsan-snapshotter emulator`` on one state directory."""

    def __init__(
        self,
        state_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: Path | str | None = None,
        faults: str | None = None,
        latency_ms: int | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.seed = seed
        self.faults = faults
        self.latency_ms = latency_ms
        self.extra_args = list(extra_args)
        self.env = dict(env) if env is not None else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.log_path = self.state_dir / "emulator.log"
        self._process: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None
        self._info: EmulatorInfo | None = None
        self._admin: AdminClient | None = None

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "elasticsan_snapshotter",
            "emulator",
            "--listen",
            f"{self.host}:{self.port}",
            "--state-dir",
            str(self.state_dir),
        ]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        if self.faults:
            cmd += ["--faults", self.faults]
        if self.latency_ms is not None:
            cmd += ["--latency-ms", str(self.latency_ms)]
        return cmd + self.extra_args

    @property
    def info(self) -> EmulatorInfo:
        if self._info is None:
            raise EmulatorError("the emulator is not running")
        return self._info

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(self.info)
        return self._admin

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmulatorInfo:
        if self.running():
            raise EmulatorError("the emulator is already running")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        env = dict(os.environ if self.env is None else self.env)
        # The emulator must write its ready line unbuffered and nothing else to stdout.
        env["PYTHONUNBUFFERED"] = "1"
        try:
            self._process = subprocess.Popen(
                self.command(),
                stdout=subprocess.PIPE,
                stderr=self._log,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
            )
        except OSError as error:
            self._log.close()
            self._log = None
            raise EmulatorError(f"cannot run the emulator: {error}") from error
        line = self._read_ready_line(self._process)
        try:
            self._info = EmulatorInfo.from_json(line)
        except (ValueError, KeyError) as error:
            self._terminate()
            raise EmulatorError(f"unexpected ready line from the emulator: {line!r} ({error})") from None
        self._admin = None
        return self._info

    def _read_ready_line(self, process: subprocess.Popen[str]) -> str:
        lines: queue.Queue[str] = queue.Queue()
        stdout = process.stdout
        assert stdout is not None
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        line: str | None = None
        while line is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.05)
            except queue.Empty:
                continue
        if line is not None and line.strip():
            return line
        if line is not None:
            # stdout closed without a ready line: the process is on its way out.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self.stop_timeout)
        if process.poll() is None:
            self._terminate()
            raise EmulatorError(
                f"the emulator printed no ready line within {self.startup_timeout} s{self._log_tail()}"
            )
        code = self._reap(process)
        raise EmulatorError(f"the emulator exited with status {code} before it was ready{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "; log tail:\n" + "\n".join(text.splitlines()[-20:]) if text.strip() else ""

    def stop(self) -> int | None:
        """SIGTERM, wait up to ``stop_timeout``, then SIGKILL. Returns the exit status."""
        return self._terminate()

    def kill(self) -> int | None:
        """SIGKILL at once, as a crash would end it."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
        return self._reap(process)

    def _terminate(self) -> int | None:
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        return self._reap(process)

    def _reap(self, process: subprocess.Popen[str]) -> int | None:
        code = process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._process = None
        self._info = None
        self._admin = None
        return code

    def restart(self, *, keep_port: bool = False) -> EmulatorInfo:
        """Stop and start again on the same state directory (optionally on the same port)."""
        previous = self._info
        self.stop()
        if keep_port and previous is not None:
            self.port = previous.port
        return self.start()

    def __enter__(self) -> EmulatorProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
