"""Lists that page, as AWS's do, where moto answers whole lists.

Every paginated list operation the product uses answers at most `size` items a page (the
world's `page_size` setting; fewer if the request asks for fewer), with the real API's own
token fields: botocore's paginator model names them (input and output token, the
"more results" flag, the limit and the list), so the world and any SDK agree on them.

- Where moto pages once asked a limit (Route 53 record sets and zones, IAM's roles and tags, ELB's
  load balancers, the tagging API), the world lowers the limit to the page size and moto
  pages with its own tokens. Route 53's record-set tokens are a position (name, type), not
  an opaque string: a client may start anywhere, as a look-up of one record does.
- Where moto ignores the limit (EC2's Describe* calls, ELB's target groups and listeners,
  ACM's certificates, IAM's policy versions) or pages unlike AWS (IAM's policies), the
  world cuts moto's whole answer into pages itself, with opaque tokens.
- ListHostedZonesByName, which botocore has no paginator for, pages as Route 53 documents
  it: zones in order of their names with the labels reversed, from DNSName (and
  HostedZoneId), with NextDNSName and NextHostedZoneId.

EC2 may answer a Describe* call without MaxResults whole; the world pages it anyway, as
the API allows. The world's own simulators and the tests' harness see whole lists: they
play AWS's insides or inspect the world, they are not among its clients.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator_sandbox.cloudtrail import SELF_AGENT

# User agents that see whole lists (see the module's docstring).
WHOLE_LIST_AGENTS = (SELF_AGENT, "test-harness")

# (service, operation) that moto pages itself once given a limit.
NATIVE = frozenset(
    {
        ("route53", "ListResourceRecordSets"),
        ("route53", "ListHostedZones"),
        ("iam", "ListRoles"),
        ("iam", "ListRoleTags"),
        ("iam", "ListPolicyTags"),
        ("iam", "ListOpenIDConnectProviderTags"),
        ("elbv2", "DescribeLoadBalancers"),
        ("resourcegroupstaggingapi", "GetResources"),
    }
)
# (service, operation) that moto answers whole: the world cuts the answer into pages.
SLICED = frozenset(
    {
        ("ec2", "DescribeSubnets"),
        ("ec2", "DescribeRouteTables"),
        ("ec2", "DescribeSecurityGroups"),
        ("elbv2", "DescribeTargetGroups"),
        ("elbv2", "DescribeListeners"),
        ("acm", "ListCertificates"),
        ("iam", "ListPolicyVersions"),
        # moto pages these, but ends a list that fills its last page with an empty page.
        ("iam", "ListPolicies"),
        ("iam", "ListAttachedRolePolicies"),
    }
)
# A limit above any list's length: moto's whole answer, where it would page by default.
WHOLE = str(10**6)
# Route 53's default and largest page of ListHostedZonesByName.
ZONES_BY_NAME_MAX = 100


@dataclass
class Paging:
    size: int | None = None  # items a page; None: whole lists, as moto answers


PAGING = Paging()


def page_lists(size: int | None) -> None:
    """Patch moto (once) and set the page size of every paginated list; None or 0 turns
    paging off (moto's whole lists)."""
    PAGING.size = size or None
    _patch_once()


def paginator(service: str, operation: str) -> dict[str, Any]:
    """botocore's paginator model of an operation: its token, limit and result fields."""
    return dict(_paginators(service).get_paginator(operation))


@functools.cache
def _paginators(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_paginator_model(service)


def _pages_for(response: Any) -> bool:
    """Whether this request gets pages: paging is on and the caller is a client."""
    if PAGING.size is None:
        return False
    agent = str(response.headers.get("User-Agent") or "")
    return not any(whole in agent for whole in WHOLE_LIST_AGENTS)


def _page_size(asked: int | None) -> int:
    assert PAGING.size is not None
    return min(asked, PAGING.size) if asked else PAGING.size


def _overriding(response: Any, values: dict[str, Callable[[Any], Any]]) -> None:
    """Make this request's `_get_param` answer `values[name](default)` for those names
    (moto reads every parameter through it, `_get_int_param` too)."""
    read = response._get_param

    def get_param(name: str, if_none: Any = None) -> Any:
        return values[name](if_none) if name in values else read(name, if_none)

    response._get_param = get_param


def _native(original: Callable[[Any], Any], model: dict[str, Any]) -> Callable[[Any], Any]:
    limit = model["limit_key"]

    def method(self: Any) -> Any:
        if _pages_for(self):
            size = str(_page_size(self._get_int_param(limit)))
            _overriding(self, {limit: lambda _default: size})
        return original(self)

    return method


def _sliced(original: Callable[[Any], Any], model: dict[str, Any]) -> Callable[[Any], Any]:
    token_in, token_out, limit = model["input_token"], model["output_token"], model["limit_key"]
    key, more = model["result_key"], model.get("more_results")

    def method(self: Any) -> Any:
        if not _pages_for(self):
            return original(self)
        start = _offset(self._get_param(token_in))
        size = _page_size(self._get_int_param(limit))
        # moto is given no token and no limit of the client's: the whole list, from the start.
        _overriding(self, {token_in: lambda default: default, limit: lambda _default: WHOLE})
        result = original(self)
        answer = result.result
        items = list(answer.get(key) or [])
        end = start + size
        answer[key] = items[start:end]
        answer[token_out] = _token(end) if end < len(items) else None
        if more:
            answer[more] = end < len(items)
        return result

    return method


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"sandbox-page:{offset}".encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    return int(base64.urlsafe_b64decode(token.encode()).decode().rsplit(":", 1)[-1])


def _reversed_labels(name: str) -> str:
    """A zone's name as ListHostedZonesByName orders it: labels reversed (com.example.www)."""
    return ".".join(reversed(name.rstrip(".").lower().split(".")))


def _zones_by_name(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def method(self: Any) -> Any:
        if not _pages_for(self):
            return original(self)
        name, zone_id = self._get_param("DNSName"), self._get_param("HostedZoneId")
        size = _page_size(self._get_int_param("MaxItems") or ZONES_BY_NAME_MAX)
        # moto, given no DNSName, lists every zone; the world picks where the page starts.
        _overriding(self, {"DNSName": lambda _default: None})
        result = original(self)
        answer = result.result
        zones = sorted(
            answer["HostedZones"], key=lambda z: (_reversed_labels(z.name), z.resource_id)
        )
        start = (_reversed_labels(name), (zone_id or "").removeprefix("/hostedzone/"))
        rest = [z for z in zones if (_reversed_labels(z.name), z.resource_id) >= start]
        answer.update(
            {
                "HostedZones": rest[:size],
                "DNSName": name,
                "HostedZoneId": zone_id,
                "IsTruncated": len(rest) > size,
                "NextDNSName": rest[size].name if len(rest) > size else None,
                "NextHostedZoneId": rest[size].resource_id if len(rest) > size else None,
                "MaxItems": str(size),
            }
        )
        return result

    return method


def _response_class(service: str) -> Any:
    """moto's class that answers a service's requests."""
    if service == "route53":
        from moto.route53.responses import Route53

        return Route53
    if service == "iam":
        from moto.iam.responses import IamResponse

        return IamResponse
    if service == "elbv2":
        from moto.elbv2.responses import ELBV2Response

        return ELBV2Response
    if service == "ec2":
        from moto.ec2.responses import EC2Response

        return EC2Response
    if service == "acm":
        from moto.acm.responses import AWSCertificateManagerResponse

        return AWSCertificateManagerResponse
    from moto.resourcegroupstaggingapi.responses import ResourceGroupsTaggingAPIResponse

    assert service == "resourcegroupstaggingapi", service
    return ResourceGroupsTaggingAPIResponse


def _patch_once() -> None:
    from botocore import xform_name

    route53 = _response_class("route53")
    if getattr(route53.list_hosted_zones_by_name, "sandbox_paged", False):
        return
    for operations, paged in ((NATIVE, _native), (SLICED, _sliced)):
        for service, operation in sorted(operations):
            cls = _response_class(service)
            name = xform_name(operation)
            setattr(cls, name, paged(getattr(cls, name), paginator(service, operation)))
    by_name = _zones_by_name(route53.list_hosted_zones_by_name)
    by_name.sandbox_paged = True  # type: ignore[attr-defined]
    route53.list_hosted_zones_by_name = by_name
