"""Local server processes for the benchmark scripts (e2e.py, soak.py): a free loopback
port, a child that dies with the script, a graceful stop, and waiting until a server
listens."""

import ctypes
import signal
import socket
import subprocess
import time


class SetupError(Exception):
    """A script could not set up what it measures (a server did not start): not a
    finding about the tool."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    """Run in a server's child process before exec: the kernel kills it when the script
    dies, even by SIGKILL, so no server (FerretDB burns CPU when idle) outlives a run."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def stop_process(process, grace=15):
    """Terminates a server process, killing it if it has not exited within `grace` s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_port(port, process, what):
    """Waits (up to a minute) until `process` listens on 127.0.0.1:`port`; SetupError
    when it exits first or never does."""
    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            raise SetupError(f"{what} exited during startup")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SetupError(f"{what} did not start on port {port}")
