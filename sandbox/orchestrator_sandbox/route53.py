"""Route 53's strictness and timing for the sandbox, where moto is lenient.

- A CallerReference can be used once: a second CreateHostedZone with it fails with
  HostedZoneAlreadyExists (moto would create a duplicate zone).
- Each zone gets name servers of its own (moto gives every zone the same four), so a
  delegation names one zone, and a zone re-created after a rollback is unreachable
  until the delegation is updated, as on the real internet.
- Changes take time to reach the name servers. CreateHostedZone, ChangeResourceRecordSets
  and DeleteHostedZone each return a change of its own that GetChange reports PENDING for
  `dns_delay` seconds, then INSYNC (on AWS, usually within 60 seconds); an unknown change
  id is NoSuchChange (moto answers INSYNC for any id). The API shows the new state at once
  (ListResourceRecordSets), but the name servers, and so the world's DNS
  (`published_zones`), answer as before a change until it is INSYNC: the old records, or
  nothing for new ones, and a zone whose creation is not INSYNC does not resolve at all.
  Changes become INSYNC in the order they were made. Each is a `route53.change` event of
  the world's event log (events.py), recorded when it is made: from submission to INSYNC.
- Requests are limited per account, as Route 53 limits them: beyond `rate` requests in any
  one second, from any client but the world's own (which stand for Route 53's name
  servers), a request is answered HTTP 400 `Throttling` "Rate exceeded" and changes
  nothing: five a second per account, as AWS has long documented it (its newer token
  buckets allow more, in bursts; the world plays the strict rule). Each throttled request
  is a `route53.throttled` event, with the caller's user agent.
- An alias record may target a load balancer only once Route 53 knows it: an alias A
  record to an ELB name that no load balancer of the account has, or one made less than
  `alias_delay` seconds ago (Route 53 learns of a new load balancer a moment after ELB
  answers CreateLoadBalancer), is refused with InvalidChangeBatch, the message AWS gives
  ("... but the alias target name does not lie within the target zone, ... but that target
  was not found"). A `route53.alias_known` event spans the load balancer's creation to the
  moment Route 53 knows it, recorded the first time an alias to it is accepted.
- A DELETE must name the record set as it is now: the same TTL and values (in any order),
  or the same alias target. Otherwise the whole batch is refused with InvalidChangeBatch,
  in AWS's words ("Tried to delete resource record set [name='…', type='…'] but the values
  provided do not match the current values", or "… but it was not found"); moto deletes
  by name and type whatever values are given with them.
- A CNAME holds its name alone (RFC 1034): a batch that would leave a CNAME and another
  record set of the same name is refused with InvalidChangeBatch, in AWS's words ("RRSet of
  type A with DNS name … is not permitted because a conflicting RRSet of type  CNAME with the
  same DNS name already exists in zone …", or "RRSet of type CNAME … is not permitted as it
  conflicts with other records with the same DNS name in zone …"); replacing one with the
  other takes a DELETE and a CREATE in one batch. moto keeps both.
"""

from __future__ import annotations

import datetime
import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator_sandbox import events
from orchestrator_sandbox.cloudtrail import SELF_AGENT
from orchestrator_sandbox.dnsview import ELB_DOMAIN, Zone, plain

_TLDS = ("com", "net", "org", "co.uk")
PENDING, INSYNC = "PENDING", "INSYNC"


@dataclass
class Timing:
    """How long a change takes to be INSYNC, by which clock (set by make_route53_strict)."""

    delay: float = 0.0
    clock: Callable[[], float] = time.monotonic


@dataclass
class Rules:
    """Route 53's limits the world plays (set by make_route53_strict)."""

    rate: float = 0.0  # requests a second per account; 0: any number, as moto has it
    alias_delay: float | None = None  # None: any alias target, as moto has it
    wall: Callable[[], float] = time.time  # ELB's creation times are on the wall clock


TIMING = Timing()
RULES = Rules()
_CHANGES_LOCK = threading.Lock()  # a change and the zone state it leaves are recorded together


def make_route53_strict(
    dns_delay: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    *,
    rate: float = 0.0,
    alias_delay: float | None = None,
    wall: Callable[[], float] = time.time,
) -> None:
    """Patch moto's Route 53 (once) and set its rules; calling again sets them all anew.

    `dns_delay` 0 makes every change INSYNC at once, as moto has it. `rate` is the requests
    a second an account may make (0: no limit); `alias_delay`, the seconds after its
    creation before a load balancer can be an alias target (None: no check). `clock`
    (seconds, monotonic) and `wall` (epoch seconds) are there for tests to drive time."""
    TIMING.delay = dns_delay
    TIMING.clock = clock
    RULES.rate = rate
    RULES.alias_delay = alias_delay
    RULES.wall = wall
    _use_caller_references_once_and_distinct_name_servers()
    _make_changes_take_time()
    _limit_requests()
    _check_changes()


def published_zones(account: str) -> list[Zone]:
    """The account's public zones as Route 53's name servers serve them now: a zone with
    changes still PENDING as its last INSYNC change left it (absent if there is none)."""
    from moto.route53.models import route53_backends

    backend = route53_backends[account]["aws"]
    now = TIMING.clock()
    served = {zone_id: _served_form(zone) for zone_id, zone in list(backend.zones.items())}
    for zone_id, history in _log(backend).by_zone().items():
        if all(change.due <= now for change in history):
            continue  # everything has propagated: the zone is served as the API shows it
        done = [change for change in history if change.due <= now]
        served[zone_id] = done[-1].zone if done else None
    return [zone for zone in served.values() if zone is not None]


# ---- changes and their propagation -----------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One accepted change, and the zone as it left it (None: deleted, or private)."""

    id: str
    zone_id: str
    submitted_at: datetime.datetime
    due: float  # on TIMING.clock, when it is INSYNC
    zone: Zone | None

    def info(self, now: float) -> dict[str, Any]:
        """Its ChangeInfo as the API returns it."""
        return {
            "Id": f"/change/{self.id}",
            "Status": INSYNC if now >= self.due else PENDING,
            "SubmittedAt": self.submitted_at,
        }


@dataclass
class ChangeLog:
    """The changes made to one account's hosted zones, in the order they were made."""

    changes: dict[str, Change] = field(default_factory=dict)
    last_due: float = float("-inf")

    def record(self, zone_id: str, zone: Zone | None) -> Change:
        # Route 53 propagates changes in order: none is INSYNC before an earlier one.
        now = TIMING.clock()
        self.last_due = max(now + TIMING.delay, self.last_due)
        change = Change(
            id="C" + uuid.uuid4().hex[:20].upper(),
            zone_id=zone_id,
            submitted_at=datetime.datetime.now(datetime.UTC),
            due=self.last_due,
            zone=zone,
        )
        self.changes[change.id] = change
        events.record("route53.change", change.id, now, change.due, zone=zone_id)
        return change

    def by_zone(self) -> dict[str, list[Change]]:
        history: dict[str, list[Change]] = {}
        for change in list(self.changes.values()):
            history.setdefault(change.zone_id, []).append(change)
        return history


def in_sync_changes(account: str, zone_ids: set[str], by: float) -> list[str]:
    """The ids of the changes to those zones that were INSYNC at `by` (on TIMING.clock)."""
    from moto.route53.models import route53_backends

    history = _log(route53_backends[account]["aws"]).by_zone()
    return [c.id for zone_id in sorted(zone_ids) for c in history.get(zone_id, []) if c.due <= by]


def _log(backend: Any) -> ChangeLog:
    """The backend's change log; it lives in the backend so that a moto reset clears it."""
    return backend.__dict__.setdefault("sandbox_change_log", ChangeLog())


def _served_form(zone: Any) -> Zone | None:
    """A moto zone's records as the world's DNS reads them (API-shaped record sets)."""
    if zone is None or zone.private_zone:
        return None
    served = Zone(zone.resource_id, plain(zone.name))
    for rrset in list(zone.rrsets):
        served.records[(plain(rrset.name), rrset.type)] = _record_set(rrset)
    return served


def _record_set(rrset: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"Name": rrset.name, "Type": rrset.type}
    if rrset.ttl is not None:
        found["TTL"] = int(rrset.ttl)
    if rrset.records:
        found["ResourceRecords"] = [
            {"Value": r["Value"] if isinstance(r, dict) else r} for r in rrset.records
        ]
    if rrset.alias_target:
        found["AliasTarget"] = dict(rrset.alias_target)
    return found


def _zone_now(backend: Any, zone_id: str) -> Zone | None:
    return _served_form(backend.zones.get(zone_id.split("/")[-1]))


def _make_changes_take_time() -> None:
    from moto.core.responses import ActionResult
    from moto.route53.exceptions import Route53ClientError
    from moto.route53.responses import Route53

    if getattr(Route53.get_change, "sandbox_patched", False):
        return

    def returning_change(
        original: Callable[[Any], Any], zone_id_of: Callable[[Any, Any], str]
    ) -> Any:  # it replaces a method of moto's, whatever its type
        def method(self: Any) -> Any:
            with _CHANGES_LOCK:
                result = original(self)
                zone_id = zone_id_of(self, result).split("/")[-1]
                change = _log(self.backend).record(zone_id, _zone_now(self.backend, zone_id))
            result.result["ChangeInfo"] = change.info(TIMING.clock())
            return result

        return method

    def get_change(self: Any) -> Any:
        change = _log(self.backend).changes.get(self._get_param("Id").split("/")[-1])
        if change is None:
            raise Route53ClientError(
                "NoSuchChange", "A change with the specified change ID does not exist."
            )
        return ActionResult({"ChangeInfo": change.info(TIMING.clock())})

    Route53.create_hosted_zone = returning_change(
        Route53.create_hosted_zone, lambda _self, result: result.result["HostedZone"].id
    )
    Route53.change_resource_record_sets = returning_change(
        Route53.change_resource_record_sets, lambda self, _: self._get_param("HostedZoneId")
    )
    Route53.delete_hosted_zone = returning_change(
        Route53.delete_hosted_zone, lambda self, _: self._get_param("Id")
    )
    get_change.sandbox_patched = True  # type: ignore[attr-defined]
    Route53.get_change = get_change


# ---- caller references and name servers ------------------------------------------------------


def _use_caller_references_once_and_distinct_name_servers() -> None:
    from moto.route53.exceptions import Route53ClientError
    from moto.route53.models import Route53Backend

    original = Route53Backend.create_hosted_zone
    if getattr(original, "sandbox_patched", False):
        return
    counter = itertools.count(1)
    lock = threading.Lock()

    def create_hosted_zone(
        self: Any,
        name: str,
        private_zone: bool,
        caller_reference: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        # Caller references are the account's; kept in the backend so a moto reset clears them.
        used: set[str] = self.__dict__.setdefault("sandbox_caller_references", set())
        with lock:
            if caller_reference is not None and caller_reference in used:
                raise Route53ClientError(
                    "HostedZoneAlreadyExists",
                    f"A hosted zone has already been created with the specified caller "
                    f"reference {caller_reference}.",
                )
            zone = original(self, name, private_zone, caller_reference, *args, **kwargs)
            if caller_reference is not None:
                used.add(caller_reference)
            number = next(counter)
        servers = [
            f"ns-{number * 4 + i}.awsdns-{number % 64:02d}.{tld}" for i, tld in enumerate(_TLDS)
        ]
        if zone.delegation_set is not None:  # moto gives every public zone one
            zone.delegation_set.name_servers = servers
        for rrset in zone.rrsets:
            if rrset.type == "NS" and rrset.name.rstrip(".") == zone.name.rstrip("."):
                rrset.records = list(servers)
        return zone

    create_hosted_zone.sandbox_patched = True  # type: ignore[attr-defined]
    Route53Backend.create_hosted_zone = create_hosted_zone


# ---- the account's request rate --------------------------------------------------------------


@dataclass
class RequestWindow:
    """When one account's requests of the last second were accepted, oldest first."""

    accepted: deque[float] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, now: float, rate: float) -> bool:
        """Whether a request at `now` is within `rate` a second; if so, it counts."""
        with self.lock:
            while self.accepted and self.accepted[0] <= now - 1.0:
                self.accepted.popleft()
            if len(self.accepted) >= rate:
                return False
            self.accepted.append(now)
            return True


def _window(backend: Any) -> RequestWindow:
    """The account's window; it lives in the backend so that a moto reset clears it."""
    return backend.__dict__.setdefault("sandbox_request_window", RequestWindow())


def _throttled() -> str:
    """Route 53's answer beyond the limit, in its error format (with HTTP 400)."""
    return (
        '<?xml version="1.0"?>\n'
        '<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
        "<Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
        f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )


def _limit_requests() -> None:
    from moto.route53.responses import Route53

    original = Route53.call_action
    if getattr(original, "sandbox_patched", False):
        return

    def call_action(self: Any) -> Any:
        agent = str((self.headers or {}).get("User-Agent", ""))
        if RULES.rate > 0 and SELF_AGENT not in agent:
            now = TIMING.clock()
            if not _window(self.backend).admit(now, RULES.rate):
                events.record(
                    "route53.throttled",
                    self._get_action(),
                    now,
                    now,
                    agent=agent,
                    account=self.current_account,
                )
                return 400, {**self.response_headers, "content-type": "text/xml"}, _throttled()
        return original(self)

    call_action.sandbox_patched = True  # type: ignore[attr-defined]
    Route53.call_action = call_action


# ---- changes: deletes as the record set is, alias targets known ----------------------------

_ELB_SUFFIXES = (ELB_DOMAIN, f"{ELB_DOMAIN}.cn")


def _check_changes() -> None:
    from moto.route53.exceptions import Route53ClientError
    from moto.route53.models import Route53Backend

    original = Route53Backend.change_resource_record_sets
    if getattr(original, "sandbox_patched", False):
        return

    def change_resource_record_sets(self: Any, zoneid: str, change_list: list[Any]) -> None:
        zone = self.get_hosted_zone(zoneid)
        current = zone.rrsets
        for change in change_list:
            if change["Action"] == "DELETE":
                problem = _delete_problem(current, change["ResourceRecordSet"])
                if problem:
                    raise Route53ClientError("InvalidChangeBatch", f"[{problem}]")
        problem = _cname_problem(zone.name, current, change_list)
        if problem:
            raise Route53ClientError("InvalidChangeBatch", f"[{problem}]")
        if RULES.alias_delay is not None:
            for change in change_list:
                rrset = change["ResourceRecordSet"]
                alias = rrset.get("AliasTarget")
                if change["Action"] == "DELETE" or not alias:
                    continue
                problems = _alias_problems(self, alias, RULES.alias_delay)
                if problems:
                    raise Route53ClientError("InvalidChangeBatch", _refusal(alias, rrset, problems))
        original(self, zoneid, change_list)

    change_resource_record_sets.sandbox_patched = True  # type: ignore[attr-defined]
    Route53Backend.change_resource_record_sets = change_resource_record_sets


def _cname_problem(zone: str, current: list[Any], change_list: list[Any]) -> str | None:
    """Why Route 53 refuses a batch that would leave a CNAME beside another record set of
    the same name (None: it does not)."""
    before = {(_fqdn(r.name), r.type) for r in current}
    after = set(before)
    for change in change_list:
        rrset = change["ResourceRecordSet"]
        key = (_fqdn(rrset["Name"]), rrset["Type"])
        if change["Action"] == "DELETE":
            after.discard(key)
        else:
            after.add(key)
    for name, rtype in sorted(after - before):
        others = {t for n, t in after if n == name} - {rtype}
        if rtype == "CNAME" and others:
            return (
                f"RRSet of type CNAME with DNS name {name} is not permitted as it conflicts "
                f"with other records with the same DNS name in zone {_fqdn(zone)}"
            )
        if rtype != "CNAME" and "CNAME" in others:
            return (
                f"RRSet of type {rtype} with DNS name {name} is not permitted because a "
                f"conflicting RRSet of type  CNAME with the same DNS name already exists in "
                f"zone {_fqdn(zone)}"
            )
    return None


def _delete_problem(current: list[Any], rrset: dict[str, Any]) -> str | None:
    """Why Route 53 refuses to delete `rrset` from a zone holding `current` (None: it may)."""
    name, rtype = _fqdn(rrset["Name"]), rrset["Type"]
    head = f"Tried to delete resource record set [name='{name}', type='{rtype}']"
    found = next(
        (
            r
            for r in current
            if _fqdn(r.name) == name
            and r.type == rtype
            and r.set_identifier == rrset.get("SetIdentifier")
        ),
        None,
    )
    if found is None:
        return f"{head} but it was not found"
    if _held(found) != _given(rrset):
        return f"{head} but the values provided do not match the current values"
    return None


def _fqdn(name: str) -> str:
    return plain(name) + "."  # a wildcard as Route 53 escapes it (\\052) too


def _alias_key(alias: dict[str, Any] | None) -> tuple[str, str, bool] | None:
    if not alias:
        return None
    evaluate = alias.get("EvaluateTargetHealth", False)
    if isinstance(evaluate, str):  # moto keeps what the XML said
        evaluate = evaluate.lower() == "true"
    zone = str(alias.get("HostedZoneId", "")).split("/")[-1]
    return (_fqdn(alias.get("DNSName", "")), zone, bool(evaluate))


def _held(record: Any) -> tuple[Any, ...]:
    """What a record set in the zone holds, as a DELETE must repeat it."""
    ttl = None if record.ttl is None else int(record.ttl)
    values = frozenset(v if isinstance(v, str) else v["Value"] for v in record.records or [])
    return (ttl, values, _alias_key(record.alias_target))


def _given(rrset: dict[str, Any]) -> tuple[Any, ...]:
    ttl = rrset.get("TTL")
    values = frozenset(r["Value"] for r in rrset.get("ResourceRecords") or [])
    return (None if ttl is None else int(ttl), values, _alias_key(rrset.get("AliasTarget")))


NOT_IN_ZONE = "the alias target name does not lie within the target zone"
NOT_FOUND = "that target was not found"


def _refusal(alias: dict[str, Any], rrset: dict[str, Any], problems: list[str]) -> str:
    target = alias["DNSName"].rstrip(".") + "."
    zone = alias["HostedZoneId"].split("/")[-1]
    head = f"Tried to create an alias that targets {target}, type {rrset['Type']} in zone {zone}"
    return "[" + ", ".join(f"{head}, but {problem}" for problem in problems) + "]"


def _alias_problems(backend: Any, alias: dict[str, Any], delay: float) -> list[str]:
    """Why Route 53 refuses this alias target now (nothing: accepted). Only load balancers
    are checked; other targets are accepted as moto accepts them."""
    from moto.elbv2.models import elbv2_backends

    name = plain(alias["DNSName"]).removeprefix("dualstack.")
    if not name.endswith(_ELB_SUFFIXES):
        return []
    region = name.removesuffix(".cn").split(".")[-4]  # <name>-<id>.<region>.elb.amazonaws.com
    try:
        balancers = list(elbv2_backends[backend.account_id][region].load_balancers.values())
    except KeyError:  # not a region: no load balancer has that name
        balancers = []
    balancer = next((b for b in balancers if plain(b.dns_name) == name), None)
    if balancer is None or not _known(backend, balancer, delay):
        return [NOT_IN_ZONE, NOT_FOUND]
    if alias["HostedZoneId"].split("/")[-1] != balancer.canonical_hosted_zone_id:
        return [NOT_IN_ZONE]
    return []


def _known(backend: Any, balancer: Any, delay: float) -> bool:
    """Whether Route 53 knows the load balancer: `delay` seconds after its creation."""
    created = datetime.datetime.fromisoformat(balancer.created_time).timestamp()
    age = RULES.wall() - created
    if age < delay:
        return False
    # Those whose `route53.alias_known` is recorded; in the backend, so a moto reset clears it.
    recorded: set[str] = backend.__dict__.setdefault("sandbox_aliases_known", set())
    if balancer.arn not in recorded:
        recorded.add(balancer.arn)
        became = time.monotonic() - age + delay  # the instant it became known, monotonic
        reconciled = events.recorded("alb.reconciled", balancer.arn)
        events.record(
            "route53.alias_known",
            balancer.arn,
            became - delay,
            became,
            [reconciled] if reconciled else [],
        )
    return True
