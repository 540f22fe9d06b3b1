"""Test-only crash points, in the spirit of etcd's failpoints.

Set ORCHESTRATOR_FAILPOINT to `before:N` or `after:N` and the process ends abruptly
(`os._exit`, no clean-up, no state save) right before or right after its Nth mutating
call to AWS or Kubernetes; `before:@TEXT` or `after:@TEXT`: its first mutating call whose
operation (as the log names it) contains TEXT, for a seam whose count varies with the
world. Unset, each hook is one global lookup and a comparison.
ORCHESTRATOR_FAILPOINT_LOG, if set, names a file that gets one line per mutating call
("N operation"), so a test can learn how many crash points a run has.

The writes of a state kept in S3 are not counted (aws.AwsClient's crash_points): the
state is saved between the deployment's calls, in S3 as in a local file.
"""

from __future__ import annotations

import os

EXIT_CODE = 137  # what a SIGKILLed process reports

_spec = os.environ.get("ORCHESTRATOR_FAILPOINT", "")
_log = os.environ.get("ORCHESTRATOR_FAILPOINT_LOG", "")
_when, _, _what = _spec.partition(":")
_target = int(_what) if _what.isdigit() else 0
_named = _what[1:] if _what.startswith("@") else ""  # crash at the first call naming it
_active = bool((_target or _named) and _when in ("before", "after")) or bool(_log)
_count = 0


def before_write(operation: str) -> None:
    global _count, _target
    if not _active:
        return
    _count += 1
    if _log:
        with open(_log, "a") as fh:
            fh.write(f"{_count} {operation}\n")
    if _named and not _target and _named in operation:
        _target = _count
    if _when == "before" and _count == _target:
        _crash(operation)


def after_write(operation: str) -> None:
    if _active and _when == "after" and _count == _target:
        _crash(operation)


def _crash(operation: str) -> None:
    os.write(2, f"failpoint: crashing {_when} mutating call {_count} ({operation})\n".encode())
    os._exit(EXIT_CODE)
