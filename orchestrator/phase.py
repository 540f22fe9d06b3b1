"""What a phase is, and the context the engine hands it.

A phase is a small class with `enter` (make it so, idempotently), `verify` (is it done
and still true? cheap reads only) and `rollback` (undo what this deployment created).
It talks to AWS and Kubernetes through the context, records what it creates through the
context, and never touches the state file or the terminal itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from orchestrator.lifecycle import note_intent, note_seen, note_wait
from orchestrator.ownership import OWNER_TAG, Owner, kept_mark
from orchestrator.planning import CHECK, Change, Undo
from orchestrator.store import PhaseRecord, PhaseStatus, Resource
from orchestrator.waiting import FIRST_INTERVAL, wait_until

if TYPE_CHECKING:
    from orchestrator.aws import Aws
    from orchestrator.config import Config
    from orchestrator.kube import Kube
    from orchestrator.machine import Engine

T = TypeVar("T")
# In a resource's detail while its release is under way: why it is being kept.
RELEASING = "releasing"

__all__ = ["OWNER_TAG", "Found", "Phase", "PhaseContext", "Search"]


@dataclass(frozen=True)
class Found:
    """One thing of the deployment's, found by its marks: the phase that makes it, as that
    phase records it (kind, id, detail), and the identity of the state file its marks name
    (None: no identity mark). `shared`: a thing a rollback may leave for others who use it
    (and another state file adopts rather than makes)."""

    phase: str
    kind: str
    id: str
    identity: str | None
    detail: dict[str, Any] = field(default_factory=dict)
    shared: bool = False

    def describe(self) -> str:
        return f"{self.kind} {self.id}"


@dataclass
class Search:
    """What a search by marks knows when it asks a phase: the config's EKS cluster as
    described (None: there is none of that name), and what earlier phases found."""

    cluster: dict[str, Any] | None = None
    found: list[Found] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Found]:
        return [f for f in self.found if f.kind == kind]


class Phase:
    name: ClassVar[str]
    title: ClassVar[str]
    # Config settings (dotted keys) this phase's result depends on; changing one of them
    # after the phase is done makes resume refuse instead of silently diverging.
    inputs: ClassVar[tuple[str, ...]] = ()
    # Output keys a done phase must have; a state file without them is rejected.
    outputs: ClassVar[tuple[str, ...]] = ()
    # Outputs only some modes write (read with .get); not required of a done phase.
    optional_outputs: ClassVar[tuple[str, ...]] = ()
    # Earlier phases whose outputs this one reads (ctx.earlier), or whose work its rollback
    # has restored (ctx.restore): declared, so that a test can check them against the code
    # and the order of the phases.
    reads: ClassVar[tuple[str, ...]] = ()
    # What else goes when rollback deletes this phase's resources (the rollback preview).
    rollback_also: ClassVar[str] = ""
    # The later phase after which what this one replaced is deleted (see `retirement`).
    retires_after: ClassVar[str | None] = None

    def heading(self, config: Config) -> str:
        """The title, with the deployment's own names: {host} and {subdomain}."""
        return self.title.format(host=config.kubeflow_host, subdomain=config.subdomain)

    def plan(self, ctx: PhaseContext) -> list[Change]:
        """What `enter` would change, from reads only (every write call is refused while
        it runs). Earlier phases may not be done: read their outputs with .get."""
        return [Change(CHECK, self.heading(ctx.config))]

    def enter(self, ctx: PhaseContext) -> None:
        raise NotImplementedError

    def verify(self, ctx: PhaseContext) -> str | None:
        """Return why the phase no longer holds, or None if it does."""
        raise NotImplementedError

    def rollback(self, ctx: PhaseContext) -> None:
        """Undo what this phase created. Adopted resources are left alone."""

    def retirement(self, ctx: PhaseContext) -> list[Undo]:
        """What this phase made or took over and replaced, to delete now that the phase
        `retires_after` names is done (the old setup script's IAM role, once the controller
        runs as ours): the engine applies the deletes, each read as a rollback reads it, and
        leaves the rest recorded for a later run. Reads only."""
        return []

    def restorable(self, ctx: PhaseContext) -> bool:
        """Whether `restore` can bring back what this phase made (see PhaseContext.restore)."""
        return False

    def restore(self, ctx: PhaseContext) -> None:
        """Bring back what this phase made, for a later phase's rollback that needs it (the
        controller, to tear the ALB down): enter again, in its own record, its status kept."""
        self.enter(ctx)

    def marked(self, ctx: PhaseContext, search: Search) -> list[Found]:
        """What carries this deployment's marks of what this phase makes, recorded as the
        phase records it, whatever the state file says (for `import`, the check that no
        other state file made the deployment, and the sweep of `rollback --all`, whose
        rollback of a find is this phase's own). Reads only."""
        return []


class PhaseContext:
    def __init__(self, engine: Engine, record: PhaseRecord, *, restoring: bool = False) -> None:
        self._engine = engine
        self.record = record
        # Run for another phase's rollback (Engine.restore): the status stays as it is.
        self.restoring = restoring

    # ---- inputs -------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._engine.config

    @property
    def deployment(self) -> str:
        return self._engine.state.deployment

    @property
    def aws(self) -> Aws:
        return self._engine.aws()

    @property
    def kube(self) -> Kube:
        return self._engine.kube()

    @property
    def outputs(self) -> dict[str, Any]:
        return self.record.outputs

    def can_restore(self, phase: str) -> bool:
        """Whether an earlier phase this one reads can bring back what it made (its own
        `restorable` says)."""
        self._check_reads(phase)
        return self._engine.restorable(phase)

    def restore(self, phase: str) -> None:
        """Have the engine bring back what an earlier phase this one reads made, through
        that phase's own `restore`: a phase never calls another's handlers."""
        self._check_reads(phase)
        self._engine.restore(phase)

    def made_by(self, phase: str) -> list[Resource]:
        """What an earlier phase this one reads created, as its record lists it."""
        self._check_reads(phase)
        return [r for r in self._engine.state.phase(phase).resources if r.created]

    def _check_reads(self, phase: str) -> None:
        me = self._engine.phases.get(self.record.name)
        if me is not None and phase not in me.reads:  # not for the sweep's scratch records
            raise RuntimeError(f"phase {me.name} reads {phase} but does not declare it")

    def earlier(self, phase: str) -> dict[str, Any]:
        """Outputs of an earlier phase this one declares it reads, which the engine
        guarantees is done."""
        self._check_reads(phase)
        return self._engine.state.phase(phase).outputs

    @property
    def confirmed_by_human(self) -> bool:
        return self.record.name in self._engine.confirmations

    @property
    def allow_downgrade(self) -> bool:
        """Whether the operator asked for a controller older than the running one."""
        return self._engine.allow_downgrade

    @property
    def owner(self) -> Owner:
        """This deployment as made by this state file: what it tags and what it may touch."""
        state = self._engine.state
        return Owner(state.deployment, state.identity, state.pre_identity)

    @property
    def owner_tags(self) -> list[dict[str, str]]:
        return self.owner.tags

    def token(self, *parts: str, length: int = 32) -> str:
        """A retry-safe idempotency token, derived from the deployment: the same for every
        retry of a create, new after each rollback and for a new state file (AWS remembers
        tokens of deleted resources: a Route 53 CallerReference forever)."""
        state = self._engine.state
        seed = "|".join(
            (
                self.deployment,
                state.created_at,
                self.record.name,
                str(self.record.generation),
                *parts,
            )
        )
        return hashlib.sha256(seed.encode()).hexdigest()[:length]

    # ---- resources ----------------------------------------------------------------------

    def intend(self, kind: str, id: str, action: str, **detail: Any) -> Resource:
        """Persist that we are about to create something, before the call that does it."""
        existing = self.find(kind, id)
        if existing is not None and existing.created:
            existing.detail.update(detail)
            resource = existing
        else:
            resource = Resource(kind, id, created=True, confirmed=False, detail=detail)
            self.record.resources.append(resource)
        note_intent(self.record, action)
        self.save()
        return resource

    def confirm(self, resource: Resource, id: str | None = None, **detail: Any) -> None:
        """Persist that the create happened (and the id AWS gave it)."""
        if id is not None:
            resource.id = id
        resource.detail.update(detail)
        resource.confirmed = True
        note_intent(self.record, None)
        self.save()

    def adopt(self, kind: str, id: str, **detail: Any) -> Resource:
        """Record something that already existed: used, never deleted."""
        resource = self.find(kind, id)
        if resource is None:
            resource = Resource(kind, id, created=False, confirmed=True, detail=detail)
            self.record.resources.append(resource)
            self.save()
        return resource

    def find(self, kind: str, id: str) -> Resource | None:
        for resource in self.record.resources:
            if resource.kind == kind and resource.id == id:
                return resource
        return None

    def resources(self, kind: str) -> list[Resource]:
        return [r for r in self.record.resources if r.kind == kind]

    def owned(self, kind: str) -> list[Resource]:
        """What this deployment created (or may have: intents not yet confirmed)."""
        return [r for r in self.resources(kind) if r.created]

    def forget(self, resource: Resource) -> None:
        """Drop a resource from the record, after deleting it (or when it is not ours)."""
        self.record.resources = [r for r in self.record.resources if r is not resource]
        note_intent(self.record, None)
        self.save()

    def deleted(self, resource: Resource) -> None:
        """Drop a resource from the record once rollback deleted it (or found it already
        gone), saying so: the operator sees each resource go."""
        self.say(f"deleted {resource.describe()}")
        self.forget(resource)

    def keep(self, resources: Resource | list[Resource], reason: str) -> None:
        """Leave what this deployment created in place on purpose (something not ours uses
        it, or its marks say it is not ours): it leaves the record, and the reason stays for
        `status`. One whose release a crash interrupted (see `release`) is recorded with the
        reason it was released for: its marks came off, so its phase now finds it not ours."""
        kept = resources if isinstance(resources, list) else [resources]
        releasing = [r for r in kept if RELEASING in r.detail]
        if releasing:
            reason = str(releasing[0].detail[RELEASING])
        for resource in kept:
            self.record.kept.append({"kind": resource.kind, "id": resource.id, "reason": reason})
        self.record.resources = [r for r in self.record.resources if not any(r is k for k in kept)]
        note_intent(self.record, None)
        names = ", ".join(r.describe() for r in kept[:3])
        more = f" and {len(kept) - 3} more" if len(kept) > 3 else ""
        released = "; released: this state file's marks are off it" if releasing else ""
        self.say(f"left {names}{more} in place: {reason}{released}")
        self.save()

    def release(
        self, resources: Resource | list[Resource], reason: str, unmark: Callable[[str], None]
    ) -> None:
        """Keep what this deployment made because others still use it, and let it go: the
        phase's `unmark` puts the kept mark (why, as a tag value AWS accepts) on it, then
        takes this state file's marks off, so that the sweep and `import` no longer count it
        and a later deployment finds it pre-existing (used, never deleted).

        State first: the intent is saved before the calls, so a crash after them leaves a
        resource whose marks say it is not ours, which `keep` records with this reason."""
        released = resources if isinstance(resources, list) else [resources]
        for resource in released:
            resource.detail[RELEASING] = reason
        note_intent(self.record, f"release {', '.join(r.describe() for r in released)}")
        self.save()
        unmark(kept_mark(reason))
        self.keep(released, reason)

    def save(self) -> None:
        self._engine.save()

    # ---- talking and waiting ------------------------------------------------------------

    def say(self, message: str) -> None:
        self._engine.report.info(message, self.record.name)

    def wait_until(
        self,
        what: str,
        probe: Callable[[], T | None],
        *,
        limit: float | None = None,
        first: float = FIRST_INTERVAL,
    ) -> T:
        """Poll `probe` until it returns non-None; the wait is persisted so status shows it.
        `first`: the shortest pause between polls (waiting.pause_after), for APIs whose
        budget is small.

        The phase's status moves to waiting and back only if the engine is working on it
        (in progress): a handler run for another phase (the controller restored for the
        ingress rollback) or on its own (a test) leaves the status as it is."""
        record = self.record
        moves = record.status == PhaseStatus.IN_PROGRESS and not self.restoring
        if moves:
            self._engine.move(record, "wait", what=what)
        else:
            note_wait(record, what)
        self.save()
        result = wait_until(
            probe,
            what=what,
            policy=self._engine.policy,
            limit=limit,
            first=first,
            on_poll=lambda elapsed: self._polled(what, elapsed),
        )
        # A stopped or interrupted wait stays "waiting": that is what resume picks up.
        if moves:
            self._engine.move(record, "stop_waiting")
        return result

    def _polled(self, what: str, elapsed: float) -> None:
        # A long wait saves nothing for minutes: the lock is checked at each poll, so a
        # command that lost it (an S3 lease taken over) stops now, not at its next save.
        self._engine.store.check_held()
        self._engine.report.waiting(self.record.name, what, elapsed, self.record.waiting_detail)

    def note(self, detail: str | None) -> None:
        """What the current wait has observed (e.g. a controller's event); shown by status."""
        if detail != self.record.waiting_detail:
            note_seen(self.record, detail)
            self.save()
