"""AWS access: boto3 clients whose calls are retried on throttling and 5xx, and whose
errors carry the AWS code, the message and what to do about it.

boto3 is imported here only, and only when the first client is made, so commands that
never reach AWS (`status`) stay fast. The standard AWS settings apply unchanged:
credentials and profile, `AWS_ENDPOINT_URL` (and per-service variants) for endpoints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import tenacity

from orchestrator import __version__, failpoints

# Codes AWS uses for "slow down" and "try again": these are retried with jittered backoff.
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "PriorRequestNotComplete",
        "SlowDown",
        "ProvisionedThroughputExceededException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServiceFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "IDPCommunicationError",
        "EC2ThrottledException",
    }
)

_READ_PREFIXES = ("Describe", "Get", "List", "Head", "Lookup", "Search", "Check")

_HINTS = (
    (
        (
            "AccessDenied",
            "AccessDeniedException",
            "UnauthorizedOperation",
            "AuthorizationError",
            "UnauthorizedException",
        ),
        "the AWS identity running orchestrator lacks permission for {service}:{operation}; "
        "grant it, then run `orchestrator resume`",
    ),
    (
        (
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "ExpiredToken",
            "ExpiredTokenException",
            "SignatureDoesNotMatch",
            "NoCredentials",
            "AuthFailure",
        ),
        "the AWS credentials are missing, expired or wrong; refresh them "
        "(AWS_PROFILE, aws sso login, ...), then run `orchestrator resume`",
    ),
    (
        (
            "LimitExceeded",
            "LimitExceededException",
            "TooManyHostedZones",
            "TooManyCertificates",
            "ServiceQuotaExceededException",
            "TooManyTagsException",
            "EntityLimitExceeded",
        ),
        "an AWS quota was reached; delete unused resources or request a quota increase "
        "(Service Quotas console), then run `orchestrator resume`",
    ),
    (
        (
            "InvalidInput",
            "InvalidParameterValue",
            "InvalidParameterException",
            "ValidationException",
            "ValidationError",
            "InvalidChangeBatch",
            "MalformedPolicyDocument",
            "InvalidDomainValidationOptionsException",
            "InvalidParameterCombination",
        ),
        "AWS rejected the request as invalid; check the values in the config file, "
        "then run `orchestrator resume`",
    ),
    (
        ("NoSuchHostedZone",),
        "the hosted zone does not exist; check route53.rootDomain.hostedZoneId",
    ),
    (
        ("ResourceNotFoundException",),
        "the resource was not found; check cluster.name and cluster.region in the config",
    ),
    (
        ("ConnectionError",),
        "AWS could not be reached; check the network, proxy and AWS_ENDPOINT_URL, "
        "then run `orchestrator resume`",
    ),
)


class AwsError(Exception):
    """An AWS call failed for good (after retries, if the error was transient)."""

    def __init__(
        self, service: str, operation: str, code: str, message: str, status: int | None = None
    ) -> None:
        super().__init__(f"{service} {operation}: {code}: {message}")
        self.service = service
        self.operation = operation
        self.code = code
        self.message = message
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES or (self.status or 0) >= 500

    @property
    def hint(self) -> str:
        for codes, text in _HINTS:
            if self.code in codes:
                return text.format(service=self.service.lower(), operation=self.operation)
        return "fix the cause, then run `orchestrator resume`"


def is_mutating(operation: str) -> bool:
    return not operation.startswith(_READ_PREFIXES)


def _translate(service: str, operation: str, exc: Exception) -> AwsError:
    import botocore.exceptions as bx

    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(error.get("Code") or status or "Unknown")
        message = str(error.get("Message") or exc)
        return AwsError(service, operation, code, message, status)
    if isinstance(exc, bx.NoCredentialsError):
        return AwsError(service, operation, "NoCredentials", str(exc))
    if isinstance(exc, bx.HTTPClientError | bx.ConnectionError):
        return AwsError(service, operation, "ConnectionError", str(exc), 599)
    raise exc


def _retry_policy() -> dict[str, Any]:
    attempts = int(os.environ.get("ORCHESTRATOR_AWS_MAX_ATTEMPTS", "8"))
    base = float(os.environ.get("ORCHESTRATOR_AWS_RETRY_BASE", "0.5"))
    return {
        "retry": tenacity.retry_if_exception(lambda e: isinstance(e, AwsError) and e.retryable),
        "wait": tenacity.wait_random_exponential(multiplier=base, max=20),
        "stop": tenacity.stop_after_attempt(attempts) | tenacity.stop_after_delay(180),
        "reraise": True,
    }


class AwsClient:
    """A boto3 client whose operations are retried and raise AwsError."""

    def __init__(
        self, client: Any, service: str, on_retry: Callable[[AwsError, int], None] | None = None
    ) -> None:
        self._client = client
        self._service = service
        self._on_retry = on_retry
        self._operations = client.meta.method_to_api_mapping

    def __getattr__(self, name: str) -> Any:
        operation = self._operations.get(name)
        if operation is None:
            return getattr(self._client, name)
        method = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            return self._call(operation, method, kwargs)

        return call

    def _call(self, operation: str, method: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        mutating = is_mutating(operation)

        def attempt() -> Any:
            if mutating:
                failpoints.before_write(f"{self._service}:{operation}")
            try:
                result = method(**kwargs)
            except Exception as exc:  # noqa: BLE001 - translated or re-raised
                raise _translate(self._service, operation, exc) from None
            if mutating:
                failpoints.after_write(f"{self._service}:{operation}")
            return result

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if self._on_retry and state.outcome is not None:
                self._on_retry(state.outcome.exception(), state.attempt_number)

        return tenacity.Retrying(before_sleep=before_sleep, **_retry_policy())(attempt)

    def pages(self, method: str, key: str, **kwargs: Any) -> Iterator[Any]:
        """Items under `key` across all pages, each page request retried on its own."""
        operation = getattr(self, method)
        token_in, token_out = _PAGE_TOKENS.get((self._service, method), ("NextToken", "NextToken"))
        while True:
            page = operation(**kwargs)
            yield from page.get(key, [])
            token = page.get(token_out)
            if not token:
                return
            kwargs[token_in] = token


# Paginators that do not use NextToken/NextToken.
_PAGE_TOKENS = {
    ("iam", "list_roles"): ("Marker", "Marker"),
    ("iam", "list_policies"): ("Marker", "Marker"),
    ("iam", "list_attached_role_policies"): ("Marker", "Marker"),
    ("route53", "list_hosted_zones"): ("Marker", "NextMarker"),
    ("elbv2", "describe_load_balancers"): ("Marker", "NextMarker"),
    ("elbv2", "describe_listeners"): ("Marker", "NextMarker"),
    ("elbv2", "describe_target_groups"): ("Marker", "NextMarker"),
}


def partition_of(arn: str) -> str:
    """The partition an ARN is in: `aws`, `aws-cn`, `aws-us-gov`, ..."""
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn" or not parts[1]:
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[1]


class Aws:
    """Clients per service and region, made on first use."""

    def __init__(self, region: str, on_retry: Callable[[AwsError, int], None] | None = None):
        self.region = region
        self._on_retry = on_retry
        self._session: Any = None
        self._clients: dict[tuple[str, str], AwsClient] = {}

    def client(self, service: str, region: str | None = None) -> AwsClient:
        region = region or self.region
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = AwsClient(self._make(service, region), service, self._on_retry)
        return self._clients[key]

    def _make(self, service: str, region: str) -> Any:
        from botocore.config import Config as BotoConfig

        self._ensure_session()
        config = BotoConfig(
            # Retries are ours (tenacity), so one attempt per call here.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            user_agent_extra=f"orchestrator/{__version__}",
        )
        return self._session.client(service, region_name=region, config=config)

    def region_partition(self) -> str:
        """The partition the configured region belongs to, from botocore's endpoint data."""
        self._ensure_session()
        return str(self._session.get_partition_for_region(self.region))

    def _ensure_session(self) -> None:
        import boto3

        if self._session is None:
            self._session = boto3.session.Session()

    # The services the phases use, by name.
    @property
    def sts(self) -> AwsClient:
        return self.client("sts")

    @property
    def eks(self) -> AwsClient:
        return self.client("eks")

    @property
    def ec2(self) -> AwsClient:
        return self.client("ec2")

    @property
    def route53(self) -> AwsClient:
        # A global service: botocore resolves the partition's endpoint (route53.amazonaws.com,
        # route53.amazonaws.com.cn, ...) from the cluster's region, so it is not pinned here.
        return self.client("route53")

    @property
    def acm(self) -> AwsClient:
        return self.client("acm")

    @property
    def iam(self) -> AwsClient:
        return self.client("iam")  # global, like route53

    @property
    def elbv2(self) -> AwsClient:
        return self.client("elbv2")
