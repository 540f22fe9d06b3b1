"""hosted_zone: the public Route 53 hosted zone for the subdomain.

Created with a CallerReference recorded with the intent before the call (so a retried
or crashed create is recognised, and a zone deleted by hand is made again under a new
one: Route 53 remembers every reference forever) and tagged with the deployment and the
state file's identity. A zone for the name that is neither ours nor named in the config
stops the run: it is never adopted or deleted silently.

The phase does not wait for the zone's creation to be INSYNC: nothing needs the zone to
answer in DNS before ACM looks up the validation records, and Route 53 propagates the
zone, the delegation and those records together while the certificates are requested.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from orchestrator.aws import AwsError, tolerate
from orchestrator.builders.records import ZONE_KIND, plain
from orchestrator.creating import claim, creating
from orchestrator.errors import PhaseError
from orchestrator.ownership import OWNER_TAG, STATE_TAG, describe_identity, tag_map
from orchestrator.phase import Found, Phase, PhaseContext, Search
from orchestrator.planning import CREATE, DELETE, LEAVE, UPDATE, USE, Change, Undo
from orchestrator.store import Resource

KIND = ZONE_KIND
OURS, NAMED = "ours", "named"  # how a look-up found the zone
NO_ZONE = "NoSuchHostedZone"
Zone = dict[str, Any]  # a hosted zone, as ListHostedZonesByName describes it


def caller_reference(deployment: str, token: str) -> str:
    return f"orchestrator:{deployment}:hosted_zone:{token}"


def our_references(ctx: PhaseContext) -> set[str]:
    """The CallerReferences of this state file's creates: pending ones are the intent's id;
    confirmed ones are kept in the record's detail. Only references this deployment makes
    count, so that an edited state cannot name another tool's zone into ours."""
    ours = caller_reference(ctx.deployment, "")
    references = set()
    for resource in ctx.owned(KIND):
        if resource.id.startswith("pending:"):
            references.add(resource.id.removeprefix("pending:"))
        else:
            references.add(str(resource.detail.get("caller_reference", "")))
    return {r for r in references if r.startswith(ours)}


class HostedZonePhase(Phase):
    name = "hosted_zone"
    title = "public hosted zone for the subdomain"
    inputs = ("route53.subDomain.name", "route53.subDomain.hostedZoneId")
    outputs = ("zone_id", "name_servers")
    reads = ()

    def plan(self, ctx: PhaseContext) -> list[Change]:
        change, _, zone = self._decide(ctx)
        if zone is not None:
            self._outputs(ctx, zone)  # the plan's copy of the state only
        return [change]

    def enter(self, ctx: PhaseContext) -> None:
        _, apply, _ = self._decide(ctx)
        self._outputs(ctx, apply())

    def _decide(self, ctx: PhaseContext) -> tuple[Change, Callable[[], Zone], Zone | None]:
        """The one decision plan lists and enter applies: make the zone, or use the one
        found (ours, tagged again if its tags are missing; or the one the config names).
        Applying it records the zone and returns it. Anyone else's zone for the name stops
        both, in the same words (from _look_up), before any write."""
        name = ctx.config.subdomain
        found, zone, tags = self._look_up(ctx)
        if zone is None:
            change = Change(CREATE, f"public hosted zone {name}", f"tagged {OWNER_TAG}")
            return change, lambda: self._create(ctx), None
        zone_id = _short(zone["Id"])
        what = f"hosted zone {zone_id} for {name}"
        if found == NAMED:  # the zone the config names: used as it is, never deleted

            def use() -> Zone:
                ctx.adopt(KIND, zone_id, name=name)
                return zone

            return Change(USE, what, "named in the config"), use, zone
        retag = self._needs_tags(ctx, tags)

        def claim_ours() -> Zone:
            # The first unsettled create (a crash lost its answer) settles as this zone;
            # any other is dropped.
            pending = [r for r in ctx.owned(KIND) if not r.confirmed]
            reference = zone.get("CallerReference")
            first = pending[0] if pending else None
            claim(ctx, KIND, zone_id, first, name=name, caller_reference=reference)
            for extra in pending[1:]:
                ctx.forget(extra)
            if retag:
                self._tag(ctx, zone_id)
            return zone

        if retag:  # made by a create of ours whose tagging a crash (or a hand) undid
            why = f"this deployment's by its CallerReference: tag it {OWNER_TAG}/{STATE_TAG}"
            return Change(UPDATE, what, why), claim_ours, zone
        return Change(USE, what, "this deployment's"), claim_ours, zone

    def _outputs(self, ctx: PhaseContext, zone: Zone) -> None:
        detail = ctx.aws.route53.get_hosted_zone(Id=zone["Id"])
        ctx.outputs["zone_id"] = _short(zone["Id"])
        ctx.outputs["name_servers"] = sorted(
            plain(ns) for ns in detail["DelegationSet"]["NameServers"]
        )

    def _look_up(self, ctx: PhaseContext) -> tuple[str | None, Zone | None, dict[str, str]]:
        """(OURS, zone, its tags) if ours exists, (NAMED, zone, its tags) for the zone the
        config names, else (None, None, {}); anyone else's zone for the name stops the
        phase. Reads only."""
        name = ctx.config.subdomain
        named = ctx.config.subdomain_zone_id
        references = our_references(ctx)
        foreign = []
        for zone in zones_named(ctx, name):
            zone_id = _short(zone["Id"])
            if zone.get("Config", {}).get("PrivateZone"):
                continue
            tags = zone_tags(ctx, zone_id)
            # Ours: tagged so, or made by a create of ours not yet tagged (its answer lost,
            # or a crash between the create and the tagging): AWS keeps the CallerReference
            # we gave it, so that is ours on AWS's word, not only on the state file's.
            if ctx.owner.owns_tags(tags) or zone.get("CallerReference") in references:
                return OURS, zone, tags
            if zone_id == named:
                return NAMED, zone, tags
            other = ctx.owner.other_owner_of_tags(tags)
            if other is not None:
                raise PhaseError(
                    f"the hosted zone {zone_id} for {name} belongs to this deployment's "
                    f"{describe_identity(other)}, not to this one",
                    "run orchestrator with that state file (--state PATH), or if it is lost, "
                    "rebuild it with `orchestrator import`",
                )
            foreign.append(zone_id)
        if named:
            raise PhaseError(
                f"route53.subDomain.hostedZoneId {named} is not a public hosted zone for {name}",
                "fix or remove route53.subDomain.hostedZoneId in the config",
            )
        if foreign:
            raise PhaseError(
                f"a public hosted zone for {name} already exists ({', '.join(foreign)}) and was "
                "not created by this deployment; orchestrator will not adopt or delete it "
                "silently",
                f"to use it, set route53.subDomain.hostedZoneId: {foreign[0]} in the config "
                "(it will then never be deleted); otherwise delete it, then run "
                "`orchestrator resume`",
            )
        return None, None, {}

    def _create(self, ctx: PhaseContext) -> Zone:
        # A create whose outcome was never seen is retried with its own reference (Route 53
        # then answers HostedZoneAlreadyExists, and the zone is found by it); any other
        # create gets a new one, which the intent records before the call.
        pending = [r for r in ctx.owned(KIND) if r.id.startswith("pending:")]
        reference = (
            pending[0].id.removeprefix("pending:")
            if pending
            else caller_reference(ctx.deployment, secrets.token_hex(8))
        )
        action = f"create hosted zone {ctx.config.subdomain}"
        with creating(ctx, KIND, f"pending:{reference}", action) as made:
            created = self._create_zone(ctx, reference)
            zone = created["HostedZone"]
            made.confirm(
                id=_short(zone["Id"]), name=ctx.config.subdomain, caller_reference=reference
            )
        self._tag(ctx, _short(zone["Id"]))
        return zone

    def _create_zone(self, ctx: PhaseContext, reference: str) -> dict[str, Any]:
        """CreateHostedZone's answer; made up from the zone if an earlier attempt made it."""
        try:
            return ctx.aws.route53.create_hosted_zone(
                Name=ctx.config.subdomain,
                CallerReference=reference,
                HostedZoneConfig={
                    "Comment": f"managed by orchestrator deployment {ctx.deployment}",
                    "PrivateZone": False,
                },
            )
        except AwsError as exc:
            if exc.code != "HostedZoneAlreadyExists":
                raise
            # The create went through on an earlier attempt: find it by its reference.
            zone = next(
                (
                    z
                    for z in zones_named(ctx, ctx.config.subdomain)
                    if z.get("CallerReference") == reference
                ),
                None,
            )
            if zone is None:
                raise
            return {"HostedZone": zone, "ChangeInfo": None}

    def _needs_tags(self, ctx: PhaseContext, tags: dict[str, str]) -> bool:
        """Whether a zone of ours lacks this state file's tags (lost, or never put on)."""
        return not ctx.owner.owns_tags(tags) or ctx.owner.identity != tags.get(STATE_TAG)

    def _tag(self, ctx: PhaseContext, zone_id: str) -> None:
        ctx.aws.route53.change_tags_for_resource(
            ResourceType="hostedzone", ResourceId=zone_id, AddTags=ctx.owner_tags
        )

    def verify(self, ctx: PhaseContext) -> str | None:
        zone_id = ctx.outputs["zone_id"]
        zone = tolerate(ctx.aws.route53.get_hosted_zone, NO_ZONE, Id=zone_id)
        if zone is None:
            return f"hosted zone {zone_id} no longer exists"
        if plain(zone["HostedZone"]["Name"]) != ctx.config.subdomain:
            return f"hosted zone {zone_id} is not for {ctx.config.subdomain}"
        if ctx.owned(KIND) and not ctx.owner.owns_tags(zone_tags(ctx, zone_id)):
            return f"hosted zone {zone_id} lost its {OWNER_TAG}/{STATE_TAG} tags"
        return None

    def marked(self, ctx: PhaseContext, search: Search) -> list[Found]:
        return marked_zones(ctx)

    def rollback(self, ctx: PhaseContext) -> None:
        for undo in self.rollback_plan(ctx):
            undo.apply()

    def rollback_plan(self, ctx: PhaseContext) -> list[Undo]:
        """The one decision the rollback preview shows and rollback applies: each zone this
        deployment made goes (gone already: nothing to do), but for one whose tags now say
        it is not this state file's, which is left. Whether a zone holds records not ours
        is read as it is deleted: the later phases' rollbacks delete their records first."""
        undos = []
        for resource in ctx.owned(KIND):
            if self._ours_or_gone(ctx, resource):
                undos.append(Undo(resource, DELETE, "", self._deleting(ctx, resource)))
            else:
                undos.append(Undo(resource, LEAVE, NOT_OURS, _leaving(ctx, resource)))
        return undos

    def _ours_or_gone(self, ctx: PhaseContext, resource: Resource) -> bool:
        """Whether the zone's tags name this state file (or it is gone: nothing to delete).
        An unsettled create's zone is ours by its CallerReference, even untagged."""
        if resource.id.startswith("pending:"):
            return True
        tags = tolerate(zone_tags, NO_ZONE, ctx=ctx, zone_id=resource.id)
        return tags is None or ctx.owner.owns_tags(tags)

    def _deleting(self, ctx: PhaseContext, resource: Resource) -> Callable[[], None]:
        zone_ids = [resource.id]
        if resource.id.startswith("pending:"):
            # A create whose outcome was never recorded: the zone, if it was made, is found
            # by its CallerReference, ours alone, which says it is ours even untagged.
            reference = resource.id.removeprefix("pending:")
            zones = zones_named(ctx, ctx.config.subdomain)
            zone_ids = [_short(z["Id"]) for z in zones if z.get("CallerReference") == reference]

        def delete() -> None:
            for zone_id in zone_ids:
                delete_zone(ctx, zone_id)
            ctx.deleted(resource)

        return delete


NOT_OURS = "its tags say it is not this state file's"


def _leaving(ctx: PhaseContext, resource: Resource) -> Callable[[], None]:
    return lambda: ctx.keep(resource, NOT_OURS)


def delete_zone(ctx: PhaseContext, zone_id: str) -> None:
    """Delete a zone of ours; refuse, naming them, if it holds records this deployment did
    not write (every page of them read: Route 53 would refuse too, naming none). Already
    gone: nothing to do."""
    rrsets = tolerate(
        lambda: list(
            ctx.aws.route53.pages(
                "list_resource_record_sets", "ResourceRecordSets", HostedZoneId=zone_id
            )
        ),
        NO_ZONE,
    )
    if rrsets is None:
        return
    leftovers = [
        r
        for r in rrsets
        if r["Type"] not in ("NS", "SOA") or plain(r["Name"]) != ctx.config.subdomain
    ]
    if leftovers:
        names = ", ".join(f"{plain(r['Name'])} {r['Type']}" for r in leftovers)
        raise PhaseError(
            f"hosted zone {zone_id} for {ctx.config.subdomain} was left in place: it holds "
            f"records orchestrator did not create: {names}",
            "delete those records (or move them elsewhere), then run the rollback again",
        )
    tolerate(ctx.aws.route53.delete_hosted_zone, NO_ZONE, Id=zone_id)


def zones_named(ctx: PhaseContext, name: str) -> list[dict[str, Any]]:
    """Every hosted zone with exactly this name (there can be several)."""
    found, kwargs = [], {"DNSName": name}
    while True:
        page = ctx.aws.route53.list_hosted_zones_by_name(**kwargs)
        zones = page.get("HostedZones", [])
        found += [z for z in zones if plain(z["Name"]) == name]
        beyond = zones and plain(zones[-1]["Name"]) != name
        if not page.get("IsTruncated") or beyond:
            return found
        kwargs = {"DNSName": page["NextDNSName"], "HostedZoneId": page["NextHostedZoneId"]}


def zone_tags(ctx: PhaseContext, zone_id: str) -> dict[str, str]:
    tags = ctx.aws.route53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=zone_id)
    return tag_map(tags.get("ResourceTagSet", {}).get("Tags", []))


def _short(zone_id: str) -> str:
    return zone_id.removeprefix("/hostedzone/")


# ---- marks: what carries the deployment's tags (import, the sweep) ----------------------------


def marked_zones(ctx: PhaseContext) -> list[Found]:
    """Our hosted zones for the subdomain, by their tags."""
    found = []
    for zone in zones_named(ctx, ctx.config.subdomain):
        zone_id = _short(zone["Id"])
        tags = zone_tags(ctx, zone_id)
        if tags.get(OWNER_TAG) == ctx.deployment:
            detail = {"name": ctx.config.subdomain}
            found.append(Found("hosted_zone", KIND, zone_id, tags.get(STATE_TAG), detail))
    return found
