"""The crash-safe create, written once: record the intent, make the call, confirm it.

    with creating(ctx, KIND, f"pending:{token}", "request certificate", token=token) as made:
        arn = acm.request_certificate(...)["CertificateArn"]
        made.confirm(id=arn)  # the id AWS gave it; without this, confirmed as it is at the end

The intent is saved before the call, so a crash during it leaves a record (`confirmed`
False) that resume and rollback look for; the result is saved after it. If the call
raises, nothing is confirmed and the intent stays.

`claim` is its twin for what a look-up finds already made by us (a create whose answer
was lost in a crash, say): the record says so from then on, without a call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from orchestrator.phase import PhaseContext
from orchestrator.store import Resource


@dataclass
class Creation:
    """The resource a `creating` block is making, to confirm with what the call answered."""

    ctx: PhaseContext
    resource: Resource
    confirmed: bool = False

    def confirm(self, id: str | None = None, **detail: Any) -> None:
        self.ctx.confirm(self.resource, id=id, **detail)
        self.confirmed = True


@contextmanager
def creating(
    ctx: PhaseContext, kind: str, id: str, action: str, **detail: Any
) -> Iterator[Creation]:
    """Intend (saved), run the block's call, confirm (saved). A record this deployment
    made already (an earlier attempt's intent) is reused, so a retry is recorded once."""
    made = Creation(ctx, ctx.intend(kind, id, action, **detail))
    yield made
    if not made.confirmed:
        made.confirm()


def claim(
    ctx: PhaseContext, kind: str, id: str, pending: Resource | None = None, **detail: Any
) -> Resource:
    """Record as this deployment's something of ours found by look-up. A confirmed record
    of it stays as it is; otherwise its unconfirmed record, or `pending` (the intent of the
    create that made it, under another id), or a new record is confirmed with this id.
    `pending`, if not the record kept, is dropped."""
    existing = ctx.find(kind, id)
    if existing is not None and existing.confirmed:
        resource = existing
    else:
        resource = existing or pending or ctx.intend(kind, id, f"record own {kind} {id}")
        ctx.confirm(resource, id=id, **detail)
    if pending is not None and pending is not resource:
        ctx.forget(pending)
    return resource
