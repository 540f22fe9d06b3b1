"""certificates_issued: wait until ACM has issued every certificate; fail fast if it won't."""

from __future__ import annotations

from typing import Any

from orchestrator.builders.acm import DEAD_STATUSES
from orchestrator.errors import PhaseError
from orchestrator.phase import Phase, PhaseContext
from orchestrator.planning import WAIT, Change

# ACM gives up on DNS validation after 72 hours; we stop waiting (resumably) long before.
WAIT_LIMIT = 2 * 3600

_REASONS = {
    "CAA_ERROR": "a CAA record on the domain does not allow Amazon to issue certificates; "
    'add `0 issue "amazon.com"` to the CAA records',
    "DOMAIN_NOT_ALLOWED": "ACM may not issue certificates for this domain",
    "ADDITIONAL_VERIFICATION_REQUIRED": "AWS needs more information; open a case with AWS Support",
}


class CertificatesIssuedPhase(Phase):
    name = "certificates_issued"
    title = "wait for ACM to issue the certificates"
    inputs = (
        "cluster.region",
        "route53.subDomain.name",
        "route53.subDomain.subjectAlternativeNames",
        "route53.rootDomain.wildcardCertificate",
    )
    outputs = ("certificate_arn", "issued")
    reads = ("certificates",)

    def plan(self, ctx: PhaseContext) -> list[Change]:
        return [Change(WAIT, "for ACM to issue the certificates", "once their records resolve")]

    def enter(self, ctx: PhaseContext) -> None:
        certificates = ctx.earlier("certificates")["certificates"]

        def all_issued() -> dict[str, Any] | None:
            statuses = {c["domain"]: self._status(ctx, c) for c in certificates}
            pending = {d: s for d, s in statuses.items() if s != "ISSUED"}
            if pending:
                ctx.note(", ".join(f"{d} is {s}" for d, s in pending.items()))
                return None
            return statuses

        count = len(certificates)
        ctx.wait_until(
            f"ACM to issue {count} certificate{'s' if count > 1 else ''} (DNS validation)",
            all_issued,
            limit=WAIT_LIMIT,
        )
        ctx.outputs["certificate_arn"] = certificates[0]["arn"]
        ctx.outputs["issued"] = [c["arn"] for c in certificates]

    def _status(self, ctx: PhaseContext, cert: dict[str, Any]) -> str:
        found = ctx.aws.acm.describe_certificate(CertificateArn=cert["arn"])["Certificate"]
        status = found["Status"]
        if status in DEAD_STATUSES:
            reason = found.get("FailureReason", "")
            explained = _REASONS.get(reason, reason or "no reason given")
            if status == "VALIDATION_TIMED_OUT":
                explained = (
                    "ACM did not see the DNS validation record in time; check that "
                    "the subdomain's delegation resolves publicly"
                )
            raise PhaseError(
                f"certificate for {cert['domain']} ({cert['arn']}) is {status}: {explained}",
                "fix the cause, then run `orchestrator resume`: the certificates phase will "
                "replace the certificate",
            )
        return status

    def verify(self, ctx: PhaseContext) -> str | None:
        current = [c["arn"] for c in ctx.earlier("certificates")["certificates"]]
        if current != ctx.outputs["issued"]:
            return "the certificates were replaced since they were issued"
        for arn in ctx.outputs["issued"]:
            status = ctx.aws.acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"]
            if status != "ISSUED":
                return f"certificate {arn} is {status}"
        return None
