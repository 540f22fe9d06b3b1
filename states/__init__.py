"""The provisioning phases, one module each, in the order they run."""

from __future__ import annotations

from orchestrator.phase import Phase


def all_phases() -> list[Phase]:
    from states.certificates import CertificatesPhase
    from states.certificates_issued import CertificatesIssuedPhase
    from states.delegation import DelegationPhase
    from states.hosted_zone import HostedZonePhase
    from states.preflight import PreflightPhase

    return [
        PreflightPhase(),
        HostedZonePhase(),
        DelegationPhase(),
        CertificatesPhase(),
        CertificatesIssuedPhase(),
    ]


def phase_names() -> list[str]:
    return [p.name for p in all_phases()]
