"""CLI runs forked from a warm interpreter, for tests that start the CLI hundreds of times.

A CLI process spends about a second of CPU before its first call: importing boto3, the
kubernetes client and the engine, and botocore parsing the services' JSON models to make
its clients. The crash sweep starts the CLI over a thousand times on two CPUs, so that
second, not AWS's simulated latencies, is most of what it costs.

The server here pays it once: it imports every module of the CLI and parses the models,
then forks one child per request. Each child is a process of its own, as `python -m
orchestrator` would be: its own working directory, environment, stdout and stderr; it
calls `orchestrator.cli.main` with the arguments, makes its own boto3 session, clients and
HTTP connections, and ends with the exit code main returns (or os._exit: a failpoint's
crash is a real one). What it shares with its siblings is only what a fork copies:
imported modules and botocore's parsed models, which no command changes.

What a fork cannot show (process start-up, `python -m` packaging, signals while starting)
is left to the tests that run the CLI as a subprocess (harness.cli).

Protocol: one JSON request per line on the server's stdin (args, env, cwd, and the files
for the child's stdout and stderr); one JSON line back on its stdout with the exit code.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pkgutil
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

# The services the CLI makes clients for, in the regions it makes them in: their models are
# parsed once, before any fork.
SERVICES = ("ec2", "elbv2", "route53", "acm", "iam", "eks", "sts", "s3")
REGIONS = ("us-west-2", "us-east-1")


class ForkServer:
    """The client side: a server process, and `cli` to run the CLI in a fork of it."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._output = Path(tempfile.mkdtemp(prefix="forkserver-"))

    def cli(
        self, *args: str, env: dict[str, str], cwd: Path, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """As harness.cli: run the CLI with ARGS and capture what it says."""
        stdout, stderr = self._output / "stdout", self._output / "stderr"
        request = {
            "args": list(args),
            "env": env,
            "cwd": str(cwd),
            "stdout": str(stdout),
            "stderr": str(stderr),
            "timeout": timeout,
        }
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        reply = self._process.stdout.readline()
        if not reply:
            raise RuntimeError(f"the fork server ended: {self._process.wait()}")
        code = json.loads(reply)["code"]
        return subprocess.CompletedProcess(
            ["orchestrator", *args], code, stdout.read_text(), stderr.read_text()
        )

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)
        shutil.rmtree(self._output, ignore_errors=True)


# ---- the server ---------------------------------------------------------------------------


def warm() -> None:
    """Import what any command imports, and share one botocore loader with its models
    parsed among the children's sessions."""
    import boto3
    import botocore.loaders
    import botocore.session
    import kubernetes.client
    import kubernetes.config  # noqa: F401 - imported for the children

    import orchestrator

    for module in pkgutil.walk_packages(orchestrator.__path__, "orchestrator."):
        if not module.name.endswith(".__main__"):  # that one runs the CLI
            importlib.import_module(module.name)

    loader = botocore.loaders.create_loader()
    botocore.session.create_loader = lambda search_path_string=None: loader  # type: ignore[attr-defined]
    session = boto3.session.Session(aws_access_key_id="warm", aws_secret_access_key="warm")
    for region in REGIONS:
        for service in SERVICES:
            session.client(service, region_name=region)


def serve() -> None:
    warm()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os._exit(child(request))
        code = wait(pid, request["timeout"])
        sys.stdout.write(json.dumps({"code": code}) + "\n")
        sys.stdout.flush()


def wait(pid: int, timeout: float) -> int:
    """The child's exit code as subprocess reports it; killed at the deadline."""
    ended = os.pidfd_open(pid)
    try:
        if not select.select([ended], [], [], timeout)[0]:
            os.kill(pid, signal.SIGKILL)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    finally:
        os.close(ended)


def child(request: dict[str, Any]) -> int:
    """In the fork: become the CLI process the request describes, run it, return its code."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, fd)
        os.close(out)
    sys.argv = ["orchestrator", *request["args"]]
    # The failpoints read their environment variables when imported: read them again.
    from orchestrator import failpoints

    importlib.reload(failpoints)
    from orchestrator.cli import main

    try:
        code = main(request["args"])
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported as a Python process would report it
        traceback.print_exc()
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    serve()
