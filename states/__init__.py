"""The provisioning phases, one module each, in the order they run.

Certificate validation is the longest wait: `certificates` only requests them, and
`certificates_issued` waits after the IAM and controller phases, so the two overlap.
"""

from __future__ import annotations

from orchestrator.phase import Phase


def all_phases() -> list[Phase]:
    from orchestrator.states.certificates import CertificatesPhase
    from orchestrator.states.certificates_issued import CertificatesIssuedPhase
    from orchestrator.states.controller import ControllerPhase
    from orchestrator.states.controller_iam import ControllerIamPhase
    from orchestrator.states.delegation import DelegationPhase
    from orchestrator.states.dns_record import DnsRecordPhase
    from orchestrator.states.endpoint import EndpointPhase
    from orchestrator.states.hosted_zone import HostedZonePhase
    from orchestrator.states.ingress import IngressPhase
    from orchestrator.states.load_balancer import LoadBalancerPhase
    from orchestrator.states.preflight import PreflightPhase
    from orchestrator.states.subnet_tags import SubnetTagsPhase

    return [
        PreflightPhase(),
        HostedZonePhase(),
        DelegationPhase(),
        CertificatesPhase(),
        ControllerIamPhase(),
        SubnetTagsPhase(),
        ControllerPhase(),
        CertificatesIssuedPhase(),
        IngressPhase(),
        LoadBalancerPhase(),
        DnsRecordPhase(),
        EndpointPhase(),
    ]


PHASE_NAMES = (
    "preflight",
    "hosted_zone",
    "delegation",
    "certificates",
    "controller_iam",
    "subnet_tags",
    "controller",
    "certificates_issued",
    "ingress",
    "load_balancer",
    "dns_record",
    "endpoint",
)


def phase_names() -> list[str]:
    """The phase names in run order, without importing the phases (fast, for `status`)."""
    return list(PHASE_NAMES)
