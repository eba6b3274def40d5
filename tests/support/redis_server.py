"""Start a real redis-server for tests (unix socket or free loopback port), stop it by PID."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

INSTALL_HINT = (
    "redis-server is not installed; the Redis cache tests need it: "
    "run `apt-get install -y redis-server` (Debian/Ubuntu)"
)


class RedisServerMissing(RuntimeError):
    """No redis-server binary on PATH."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A throw-away redis-server: no persistence, its own temporary directory.

    ``RedisServer()`` listens on a unix socket (``url`` is ``unix://…``);
    ``RedisServer(unix_socket=False)`` on a free port of 127.0.0.1 (``redis://…``).
    Raises ``RedisServerMissing`` (whose message says how to install it) when there is no
    redis-server.
    """

    def __init__(self, *, unix_socket: bool = True, start_timeout_s: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerMissing(INSTALL_HINT)
        # A short path: unix socket paths are limited to about 100 bytes.
        self.directory = Path(tempfile.mkdtemp(prefix="mmx-redis-"))
        args = [
            binary,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if unix_socket:
            self.socket_path: Path | None = self.directory / "redis.sock"
            args += [
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
            ]
            self.url = f"unix://{self.socket_path}"
        else:
            self.socket_path = None
            port = _free_port()
            args += ["--port", str(port), "--bind", "127.0.0.1"]
            self.url = f"redis://127.0.0.1:{port}/0"
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.pid = self.process.pid
        try:
            self._wait_ready(start_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        import redis

        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.directory / "redis.log"
                detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {detail}")
            try:
                client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            except (redis.RedisError, OSError) as exc:
                last_error = exc
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer within {timeout_s:g} s: {last_error}")

    def stop(self) -> None:
        """Terminate this server's process (by its PID) and remove its directory."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
