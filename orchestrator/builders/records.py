"""Route 53 record sets, shared by the phases that write DNS records.

Pure builders (record sets, change batches, comparisons) first, then the few reads and
writes, which apply the ownership rule: a record that already exists with the wanted
values is adopted (used, never deleted); one with other values that this deployment did
not create is never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.aws import tolerate
from orchestrator.creating import claim, creating
from orchestrator.errors import PhaseError
from orchestrator.phase import Found, PhaseContext
from orchestrator.planning import CREATE, DELETE, LEAVE, UPDATE, USE, Change, Undo
from orchestrator.store import Resource
from orchestrator.waiting import ROUTE53_FIRST_INTERVAL

KIND = "route53:record"
ZONE_KIND = "route53:hosted-zone"  # how the hosted zone phase records its zone


# ---- pure ------------------------------------------------------------------------------------


def fqdn(name: str) -> str:
    return name.rstrip(".").lower() + "."


def plain(name: str) -> str:
    """A name as Route 53 returns it (trailing dot, `*` escaped) in its plain form."""
    return name.replace("\\052", "*").rstrip(".").lower()


def record_set(name: str, rtype: str, values: list[str], ttl: int = 300) -> dict[str, Any]:
    return {
        "Name": fqdn(name),
        "Type": rtype,
        "TTL": ttl,
        "ResourceRecords": [{"Value": v} for v in values],
    }


def alias_record_set(name: str, target: str, target_zone_id: str) -> dict[str, Any]:
    return {
        "Name": fqdn(name),
        "Type": "A",
        "AliasTarget": {
            "HostedZoneId": target_zone_id,
            "DNSName": fqdn(target),
            "EvaluateTargetHealth": False,
        },
    }


def change_batch(action: str, rrset: dict[str, Any], comment: str) -> dict[str, Any]:
    return {"Comment": comment, "Changes": [{"Action": action, "ResourceRecordSet": rrset}]}


def values_of(rrset: dict[str, Any]) -> list[str]:
    return sorted(plain(r["Value"]) for r in rrset.get("ResourceRecords", []))


def same_record(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two record sets say the same thing (names, type, values or alias target)."""
    if plain(a["Name"]) != plain(b["Name"]) or a["Type"] != b["Type"]:
        return False
    alias_a, alias_b = a.get("AliasTarget"), b.get("AliasTarget")
    if not alias_a and not alias_b:
        return values_of(a) == values_of(b)
    if not alias_a or not alias_b:
        return False
    same_target = plain(alias_a["DNSName"]) == plain(alias_b["DNSName"])
    zone_a, zone_b = (x["HostedZoneId"].removeprefix("/hostedzone/") for x in (alias_a, alias_b))
    return same_target and zone_a == zone_b


# What a record in the way means for the one we want (record_verdict).
HOLDS = "holds"  # it already says what we want: use it, write nothing
FOREIGN = "foreign"  # another's record with other values: never overwritten
WRITE = "write"  # none there, or ours with other values: ours to write


def record_verdict(current: dict[str, Any] | None, wanted: dict[str, Any], ours: bool) -> str:
    """The ownership rule for one record, shared by enter and plan: `current` is what the
    zone holds under the wanted name and type, `ours` whether this deployment wrote it."""
    if current is not None and same_record(current, wanted):
        return HOLDS
    if current is not None and not ours:
        return FOREIGN
    return WRITE


def record_id(zone_id: str, name: str, rtype: str) -> str:
    return f"{zone_id}/{plain(name)}/{rtype}"


def describe(rrset: dict[str, Any]) -> str:
    head = f"{plain(rrset['Name'])} {rrset['Type']}"
    if rrset.get("AliasTarget"):
        return f"{head} alias {plain(rrset['AliasTarget']['DNSName'])}"
    return f"{head} {' '.join(values_of(rrset))}"


# ---- reads and writes ------------------------------------------------------------------------


def get_record(ctx: PhaseContext, zone_id: str, name: str, rtype: str) -> dict[str, Any] | None:
    """The record set, or None if it (or its whole zone) does not exist."""
    page = tolerate(
        ctx.aws.route53.list_resource_record_sets,
        "NoSuchHostedZone",
        HostedZoneId=zone_id,
        StartRecordName=fqdn(name),
        StartRecordType=rtype,
        MaxItems="1",
    )
    for rrset in (page or {}).get("ResourceRecordSets", []):
        if plain(rrset["Name"]) == plain(name) and rrset["Type"] == rtype:
            return rrset
    return None


def decide_record(
    ctx: PhaseContext, zone_id: str, wanted: dict[str, Any], purpose: str
) -> tuple[Change, Callable[[], str | None]]:
    """The one decision for `wanted` in the zone: what to do (a Change, which plan lists)
    and how (enter applies it: the change id if it wrote). A record not ours in the way
    stops both, in the same words."""
    shown = f"record {describe(wanted)} ({purpose})"
    rid = record_id(zone_id, wanted["Name"], wanted["Type"])
    current = get_record(ctx, zone_id, wanted["Name"], wanted["Type"])
    # A name with a record of the wanted type has no CNAME (Route 53 allows none beside
    # one): only an absent record costs the second read.
    in_the_way = None if current else _cname_in_the_way(ctx, zone_id, wanted, purpose)
    if in_the_way is not None:
        return _replacing(ctx, zone_id, wanted, purpose, *in_the_way)
    mine = ctx.find(KIND, rid)
    verdict = record_verdict(current, wanted, ours=bool(mine and mine.created))
    if verdict == FOREIGN:
        assert current is not None  # what is in the way
        raise PhaseError(
            f"zone {zone_id} already has {describe(current)}, which this deployment did not "
            f"create; it needs {describe(wanted)} ({purpose})",
            "if that record is stale, delete it yourself, then run `orchestrator resume`; "
            "orchestrator never overwrites records it does not own",
        )
    if verdict == HOLDS:

        def use() -> None:
            if mine is None:
                ctx.adopt(KIND, rid, zone=zone_id, rrset=current, purpose=purpose)
            else:
                claim(ctx, KIND, rid)  # our write, whose answer a crash may have lost

        return Change(USE, shown, "already there"), use

    def write() -> str:
        action = f"UPSERT {describe(wanted)}"
        with creating(ctx, KIND, rid, action, zone=zone_id, rrset=wanted, purpose=purpose):
            change = ctx.aws.route53.change_resource_record_sets(
                HostedZoneId=zone_id,
                ChangeBatch=change_batch(
                    "UPSERT", wanted, f"orchestrator {ctx.deployment}: {purpose}"
                ),
            )
        return str(change["ChangeInfo"]["Id"])

    return Change(UPDATE if current is not None else CREATE, shown, f"in zone {zone_id}"), write


def _cname_in_the_way(
    ctx: PhaseContext, zone_id: str, wanted: dict[str, Any], purpose: str
) -> tuple[Resource, dict[str, Any]] | None:
    """A name that has a CNAME can hold no other record (Route 53 refuses one beside it):
    the CNAME of ours in the way of `wanted` (one the old setup script made, taken over),
    to be replaced (with the CNAME as it is now: a DELETE must give it so); one not ours
    stops, in the words plan and enter share."""
    if wanted["Type"] == "CNAME":
        return None
    cname = get_record(ctx, zone_id, wanted["Name"], "CNAME")
    if cname is None:
        return None
    ours = ctx.find(KIND, record_id(zone_id, wanted["Name"], "CNAME"))
    if ours is None or not ours.created:
        raise PhaseError(
            f"zone {zone_id} already has {describe(cname)}, which this deployment did not "
            f"create; it needs {describe(wanted)} ({purpose}), and a name that has a CNAME "
            "can have no other record",
            "if that record is stale, delete it yourself, then run `orchestrator resume`; "
            "orchestrator never overwrites records it does not own",
        )
    return ours, cname


def _replacing(
    ctx: PhaseContext,
    zone_id: str,
    wanted: dict[str, Any],
    purpose: str,
    cname: Resource,
    old: dict[str, Any],
) -> tuple[Change, Callable[[], str | None]]:
    """Our CNAME replaced by `wanted` in one change: Route 53 applies a batch whole, so the
    name never answers nothing."""
    rid = record_id(zone_id, wanted["Name"], wanted["Type"])

    def replace() -> str:
        action = f"replace {describe(old)} with {describe(wanted)}"
        with creating(ctx, KIND, rid, action, zone=zone_id, rrset=wanted, purpose=purpose):
            change = ctx.aws.route53.change_resource_record_sets(
                HostedZoneId=zone_id,
                ChangeBatch={
                    "Comment": f"orchestrator {ctx.deployment}: {purpose}",
                    "Changes": [
                        {"Action": "DELETE", "ResourceRecordSet": old},
                        {"Action": "CREATE", "ResourceRecordSet": wanted},
                    ],
                },
            )
        ctx.forget(cname)
        return str(change["ChangeInfo"]["Id"])

    shown = f"record {describe(wanted)} ({purpose})"
    return Change(UPDATE, shown, f"replaces {describe(old)}, in one change"), replace


def ensure_record(
    ctx: PhaseContext, zone_id: str, wanted: dict[str, Any], purpose: str
) -> str | None:
    """Make `wanted` exist in the zone; return the change id if a write was made."""
    _, apply = decide_record(ctx, zone_id, wanted, purpose)
    return apply()


def plan_record(
    ctx: PhaseContext, zone_id: str | None, wanted: dict[str, Any], purpose: str
) -> Change:
    """decide_record's change, for a plan made before the zone exists too (a zone not made
    yet holds nothing); a record not ours in the way stops the plan, in enter's words."""
    if zone_id is None:
        return Change(CREATE, f"record {describe(wanted)} ({purpose})", "in the new zone")
    change, _ = decide_record(ctx, zone_id, wanted, purpose)
    return change


def wait_in_sync(ctx: PhaseContext, change_id: str | None, what: str) -> None:
    if change_id is None:
        return

    def in_sync() -> bool | None:
        status = ctx.aws.route53.get_change(Id=change_id)["ChangeInfo"]["Status"]
        return True if status == "INSYNC" else None

    ctx.wait_until(
        f"Route 53 change {change_id.split('/')[-1]} ({what}) to be INSYNC",
        in_sync,
        limit=600,
        first=ROUTE53_FIRST_INTERVAL,
    )


def record_undo(ctx: PhaseContext, resource: Resource) -> Undo:
    """Rollback's decision for a record this deployment created, read once: delete it if it
    still holds what we wrote (already gone: nothing to do, deleted as far as we care);
    leave it if it was changed since."""
    zone_id, recorded = resource.detail["zone"], resource.detail["rrset"]
    current = get_record(ctx, zone_id, recorded["Name"], recorded["Type"])
    if current is None:
        return Undo(resource, DELETE, "", lambda: ctx.deleted(resource))
    if not same_record(current, recorded):
        why = (
            f"it was changed outside orchestrator after this deployment wrote {describe(recorded)}"
        )

        def leave() -> None:
            ctx.say(f"left {describe(current)} in place: {why}")
            ctx.forget(resource)

        return Undo(resource, LEAVE, why, leave)

    def delete() -> None:
        ctx.aws.route53.change_resource_record_sets(
            HostedZoneId=zone_id,
            ChangeBatch=change_batch("DELETE", current, f"orchestrator {ctx.deployment}: rollback"),
        )
        ctx.deleted(resource)

    return Undo(resource, DELETE, "", delete)


def delete_record(ctx: PhaseContext, resource: Resource) -> None:
    """Delete a record this deployment created, if it still holds what we wrote."""
    record_undo(ctx, resource).apply()


def record_problem(ctx: PhaseContext, resource: Resource) -> str | None:
    """Why a recorded record no longer holds, or None."""
    recorded = resource.detail["rrset"]
    current = get_record(ctx, resource.detail["zone"], recorded["Name"], recorded["Type"])
    if current is None:
        return f"{describe(recorded)} is gone"
    if not same_record(current, recorded):
        return f"{plain(recorded['Name'])} {recorded['Type']} changed to {describe(current)}"
    return None


def found(phase: str, zone_id: str, rrset: dict[str, Any], identity: str | None) -> Found:
    """A record found by its zone's marks, as the phase that writes it records it."""
    rid = record_id(zone_id, rrset["Name"], rrset["Type"])
    return Found(phase, KIND, rid, identity, {"zone": zone_id, "rrset": rrset})
