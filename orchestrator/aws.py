"""AWS access: boto3 clients whose calls are retried on throttling and 5xx, and whose
errors carry the AWS code, the message and what to do about it.

Throttling means "slow down", not "broken": a throttled call is retried for minutes
(ORCHESTRATOR_AWS_THROTTLE_BUDGET), with jittered exponential backoff whose cap suits the
service, and each client paces itself once throttled (botocore's adaptive rate limiter), so
that a run shares an account's rate limit (Route 53: 5 requests a second) with other tools
instead of hammering it; Route 53, whose limit is the smallest, is paced below it from the
first request (ORCHESTRATOR_ROUTE53_RATE). Server errors and dropped connections get a few tries
(ORCHESTRATOR_AWS_MAX_ATTEMPTS): an outage that outlasts them is better reported, to be
finished later with `resume`, than waited out.

boto3 is imported here only, and only when the first client is made, so commands that
never reach AWS (`status`) stay fast. The standard AWS settings apply unchanged:
credentials and profile, `AWS_ENDPOINT_URL` (and per-service variants) for endpoints.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

from orchestrator import __version__, calls, failpoints
from orchestrator.pacing import Pace, tail_file

T = TypeVar("T")

# Codes AWS uses for "slow down": retried for as long as the throttling budget lasts.
THROTTLING_CODES = frozenset(
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
        "EC2ThrottledException",
    }
)

# Codes for trouble on AWS's side ("try again"): retried like 5xx, a few times.
SERVER_ERROR_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServiceFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "IDPCommunicationError",
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
    def throttled(self) -> bool:
        # EC2 throttles with 503 RequestLimitExceeded: the code decides before the status.
        return self.code in THROTTLING_CODES or self.status == 429

    @property
    def retryable(self) -> bool:
        return self.throttled or self.code in SERVER_ERROR_CODES or (self.status or 0) >= 500

    @property
    def hint(self) -> str:
        for codes, text in _HINTS:
            if self.code in codes:
                return text.format(service=self.service.lower(), operation=self.operation)
        if self.throttled:
            return _THROTTLED_HINT.format(service=self.service.lower())
        if self.retryable:
            return "AWS kept failing on its side; run `orchestrator resume` in a few minutes"
        return "fix the cause, then run `orchestrator resume`"


def tolerate(call: Callable[..., T], *codes: str, **kwargs: Any) -> T | None:
    """`call(**kwargs)`, or None if AWS answers with one of `codes`: an answer that is fine
    where it is asked. Gone, for a delete or a read of something that may not exist (any
    more); already there, for a create an earlier attempt made before its answer was lost.

        tolerate(iam.delete_role, "NoSuchEntity", RoleName=name)
    """
    try:
        return call(**kwargs)
    except AwsError as exc:
        if exc.code in codes:
            return None
        raise


# What ELBv2 answers for an ARN that names nothing (any more).
ELBV2_GONE = (
    "LoadBalancerNotFound",
    "TargetGroupNotFound",
    "ListenerNotFound",
    "RuleNotFound",
    "TrustStoreNotFound",
)
DESCRIBE_TAGS_MAX = 20  # ARNs a DescribeTags takes


def elbv2_tags(elbv2: AwsClient, arns: Iterable[str]) -> dict[str, dict[str, str]]:
    """The tags of ELBv2 resources, by ARN; one that is gone is left out.

    DescribeTags fails as a whole if any ARN in it is gone, which happens whenever a load
    balancer or target group is deleted after it was listed (a controller tearing a stack
    down; anyone, in a shared region). Such a batch is split in halves, and so on, until
    each gone ARN is alone: a few more calls where one was deleted, none elsewhere."""
    found: dict[str, dict[str, str]] = {}
    unique = list(dict.fromkeys(arns))
    batches = [unique[i : i + DESCRIBE_TAGS_MAX] for i in range(0, len(unique), DESCRIBE_TAGS_MAX)]
    while batches:
        batch = batches.pop()
        described = tolerate(elbv2.describe_tags, *ELBV2_GONE, ResourceArns=batch)
        if described is None:
            if len(batch) > 1:  # else that one is gone
                half = len(batch) // 2
                batches += [batch[:half], batch[half:]]
            continue
        for description in described["TagDescriptions"]:
            tags = description.get("Tags", [])
            found[description["ResourceArn"]] = {t["Key"]: t.get("Value", "") for t in tags}
    return found


_THROTTLED_HINT = (
    "AWS kept throttling {service} calls (the account's rate limit is shared with every other "
    "tool using it); run `orchestrator resume` in a few minutes, or allow more time with "
    "ORCHESTRATOR_AWS_THROTTLE_BUDGET"
)


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


@dataclass(frozen=True)
class RetrySettings:
    """How patient AWS calls are. Each has an environment variable; see from_env."""

    throttle_budget: float = 600.0  # seconds one call may go on being throttled
    max_attempts: int = 8  # tries for a call that meets 5xx or dropped connections
    base: float = 0.5  # seconds: the first backoff's upper bound, doubled on each retry
    min_rate: float = 0.5  # requests a second: the slowest a throttled client paces itself
    # Route 53 allows an account 5 requests a second, shared with external-dns, the console
    # and every other tool: a run keeps to 2 a second on average from its first request,
    # and no one second sees more than 4 of its requests (pace), so others keep 3 a second
    # on average and at least 1 in any second.
    route53_rate: float = 2.0

    @classmethod
    def from_env(cls) -> RetrySettings:
        return cls(
            throttle_budget=_setting("ORCHESTRATOR_AWS_THROTTLE_BUDGET", cls.throttle_budget),
            max_attempts=int(_setting("ORCHESTRATOR_AWS_MAX_ATTEMPTS", cls.max_attempts, 1)),
            base=_setting("ORCHESTRATOR_AWS_RETRY_BASE", cls.base),
            min_rate=_setting("ORCHESTRATOR_AWS_MIN_RATE", cls.min_rate, 0.01),
            route53_rate=_setting("ORCHESTRATOR_ROUTE53_RATE", cls.route53_rate),
        )


def _setting(name: str, default: float, minimum: float = 0.0) -> float:
    try:
        return max(minimum, float(os.environ.get(name, default)))
    except ValueError:
        return default


# How often the backoff may double before it stops growing. Route 53 allows 5 requests a
# second per account, and answers PriorRequestNotComplete until the zone's previous change
# is applied, which takes up to a minute: it gets pauses of up to 32 s at the default base.
# The others recover within seconds: 16 s (botocore's own cap is 20 s).
_DOUBLINGS = {"route53": 6}
_DEFAULT_DOUBLINGS = 5


def backoff_cap(service: str, base: float) -> float:
    """The longest pause between two attempts of a call to `service`."""
    return base * 2 ** _DOUBLINGS.get(service, _DEFAULT_DOUBLINGS)


class Patience:
    """When to give up on one call: throttling may go on until the time budget is spent;
    server errors and dropped connections count against the attempts instead."""

    def __init__(self, settings: RetrySettings) -> None:
        self.settings = settings
        self.failures = 0  # attempts that failed other than by throttling

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        # Called after each failed attempt that `retry` accepted, so with an AwsError.
        error = state.outcome.exception() if state.outcome else None
        if not (isinstance(error, AwsError) and error.throttled):
            self.failures += 1
        spent = state.seconds_since_start or 0.0
        return self.failures >= self.settings.max_attempts or spent >= self.settings.throttle_budget


def _retrying(service: str, on_sleep: Callable[[tenacity.RetryCallState], None]) -> Any:
    settings = RetrySettings.from_env()
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, AwsError) and e.retryable),
        # "Full jitter": a random pause up to the bound spreads retries of competing clients.
        wait=tenacity.wait_random_exponential(
            multiplier=settings.base, max=backoff_cap(service, settings.base)
        ),
        stop=Patience(settings),
        before_sleep=on_sleep,
        reraise=True,
    )


class AwsClient:
    """A boto3 client whose operations are retried and raise AwsError."""

    def __init__(
        self,
        client: Any,
        service: str,
        on_retry: Callable[[AwsError, int], None] | None = None,
        *,
        crash_points: bool = True,
    ) -> None:
        self._client = client
        self._service = service
        self._on_retry = on_retry
        # The test-only failpoints count the deployment's mutating calls. The state store's
        # own writes are not among them: the state is saved between those calls, in S3 as
        # in a local file, so the crash sweep's points are the same for both.
        self._crash_points = crash_points
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
        system = f"aws {self._service}"
        started = calls.check(system, operation, mutating=mutating)
        crash_point = mutating and self._crash_points
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            if crash_point:
                failpoints.before_write(f"{self._service}:{operation}")
            try:
                result = method(**kwargs)
            except Exception as exc:  # noqa: BLE001 - translated or re-raised
                raise _translate(self._service, operation, exc) from None
            if crash_point:
                failpoints.after_write(f"{self._service}:{operation}")
            return result

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            if self._on_retry and isinstance(error, AwsError):
                self._on_retry(error, state.attempt_number)

        try:
            result = _retrying(self._service, before_sleep)(attempt)
        except AwsError as error:
            calls.done(system, operation, started, attempts, error.code)
            raise
        calls.done(system, operation, started, attempts)
        return result

    def pages(self, method: str, key: str | None = None, **kwargs: Any) -> Iterator[Any]:
        """Every item of a paginated list (under `key`, by default the list the operation
        returns), page after page, each page request retried on its own.

        AWS names its page tokens differently by API (NextToken; Marker and NextMarker;
        IsTruncated with Route 53's NextRecordName, NextRecordType and NextRecordIdentifier;
        ...): they are read from botocore's paginator model of the operation."""
        api_version = self._client.meta.service_model.api_version
        model = _page_model(self._service, api_version, self._operations[method])
        call = getattr(self, method)
        seen: set[str] = set()
        while True:
            page = call(**kwargs)
            yield from page.get(key or model.result_key, [])
            tokens = model.next_tokens(page)
            if tokens is None:
                return
            if repr(tokens) in seen:  # a list that would never end
                raise AwsError(
                    self._service, method, "RepeatedPageToken", f"page token {tokens} came twice"
                )
            seen.add(repr(tokens))
            for name, token in zip(model.input_tokens, tokens, strict=True):
                if token is None:
                    kwargs.pop(name, None)
                else:
                    kwargs[name] = token


@dataclass(frozen=True)
class PageModel:
    """How an operation pages, from botocore's paginator model."""

    input_tokens: tuple[str, ...]  # request fields that say where the next page starts
    output_tokens: tuple[str, ...]  # JMESPath expressions of the answer giving their values
    more_results: str | None  # the answer's "there is more" field, where the API has one
    result_key: str | None  # the list (None: several lists, as ListEntitiesForPolicy)

    def next_tokens(self, page: dict[str, Any]) -> tuple[Any, ...] | None:
        """Where the next page starts, or None after the last page."""
        import jmespath  # type: ignore[import-untyped]  # botocore's own dependency

        tokens = tuple(jmespath.search(expression, page) for expression in self.output_tokens)
        if self.more_results and not jmespath.search(self.more_results, page):
            return None
        return tokens if any(token is not None for token in tokens) else None


def _listed(value: str | list[str]) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, list) else (value,)


@functools.cache
def _page_model(service: str, api_version: str, operation: str) -> PageModel:
    try:
        config = _paginators(service, api_version).get_paginator(operation)
    except ValueError:
        raise ValueError(f"{service} {operation} does not page: call it directly") from None
    results = _listed(config["result_key"])
    return PageModel(
        input_tokens=_listed(config["input_token"]),
        output_tokens=_listed(config["output_token"]),
        more_results=config.get("more_results"),
        result_key=results[0] if len(results) == 1 else None,
    )


@functools.cache
def _paginators(service: str, api_version: str) -> Any:
    """botocore's paginator model of a service (the data its own paginators page by)."""
    import botocore.session

    return botocore.session.get_session().get_paginator_model(service, api_version)


_SHARED_PACES: dict[tuple[str, float], Pace] = {}  # one per process and service
_PACES_LOCK = threading.Lock()


def pace(client: Any, service: str, rate: float) -> None:
    """Make every request `client` sends (each attempt) wait for a Pace shared by the
    process's clients of `service` (phases verify side by side, in threads): at most
    twice `rate` in any second, and `rate` a second on average after a burst of four times
    `rate` (at 2 a second: at most 4 in any second, and at most 8 + 2 per second over any
    longer span); `rate` 0: no pacing. The burst is what a run's first phases ask one after
    another (the zone, its delegation, the validation records: the start of the job's
    critical path), at 4 a second instead of 2. The last second's answers are kept in a
    file of this user's (tail_file), for the command that comes next."""
    if rate <= 0:
        return
    with _PACES_LOCK:
        key = (service, rate)
        if key not in _SHARED_PACES:
            per_second = max(1, int(2 * rate))
            _SHARED_PACES[key] = Pace(
                rate,
                burst=max(per_second, int(4 * rate)),
                per_second=per_second,
                tail=tail_file(service, client.meta.endpoint_url),
            )
        shared = _SHARED_PACES[key]
    # An attempt is sent and answered in the thread that made it.
    sending = threading.local()

    def take(**_: Any) -> None:  # None: botocore then sends the request as usual
        sending.ticket = shared.take()

    def answered(**_: Any) -> None:
        ticket = getattr(sending, "ticket", None)
        if ticket is not None:
            shared.answered(ticket)
            sending.ticket = None

    # First: before any handler that answers in the service's stead (moto's, in tests).
    client.meta.events.register_first("before-send", take)
    # botocore emits it after every attempt, answered or failed.
    client.meta.events.register("response-received", answered)


def pace_when_throttled(client: Any, min_rate: float) -> None:
    """Client-side rate limiting: botocore's adaptive limiter, on every request `client` sends.

    Until AWS first throttles the client it is off. From then on each request waits for a
    token from a bucket whose rate is cut by 30% at each throttling answer and grows back on
    success along a cubic curve (as TCP CUBIC does), never below `min_rate`. This is what
    botocore's `adaptive` retry mode installs; it is assembled here from botocore's parts
    because that mode fixes the floor at 0.5 requests a second and comes with retries of
    its own, while ours are the loop above (the limiter sees each of its attempts, as it
    hooks the sending of requests and the receiving of answers)."""
    from botocore.retries import adaptive, bucket, standard, throttling

    clock = bucket.Clock()
    limiter = adaptive.ClientRateLimiter(
        rate_adjustor=throttling.CubicCalculator(
            starting_max_rate=0, start_time=clock.current_time()
        ),
        rate_clocker=adaptive.RateClocker(clock),
        token_bucket=bucket.TokenBucket(max_rate=1, clock=clock, min_rate=min_rate),
        throttling_detector=standard.ThrottlingErrorDetector(
            retry_event_adapter=standard.RetryEventAdapter()
        ),
        clock=clock,
    )
    client.meta.events.register("before-send", limiter.on_sending_request)
    client.meta.events.register("needs-retry", limiter.on_receiving_response)


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
        # A boto3 session must not make clients in two threads at once (phases verify side
        # by side); the clients it makes may be used from any thread.
        self._lock = threading.Lock()

    def client(
        self, service: str, region: str | None = None, *, crash_points: bool = True
    ) -> AwsClient:
        region = region or self.region
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                made = AwsClient(
                    self._make(service, region), service, self._on_retry, crash_points=crash_points
                )
                self._clients[key] = made
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
        client = self._session.client(service, region_name=region, config=config)
        settings = RetrySettings.from_env()
        if service == "route53":
            pace(client, service, settings.route53_rate)
        pace_when_throttled(client, settings.min_rate)
        return client

    def region_partition(self) -> str:
        """The partition the configured region belongs to, from botocore's endpoint data."""
        with self._lock:
            self._ensure_session()
            return str(self._session.get_partition_for_region(self.region))

    def service_regions(self, service: str) -> list[str]:
        """The regions of the configured region's partition that offer `service`, from
        botocore's endpoint data (whether the account has enabled them is another matter)."""
        with self._lock:
            self._ensure_session()
            partition = self._session.get_partition_for_region(self.region)
            return list(self._session.get_available_regions(service, partition_name=partition))

    def _ensure_session(self) -> None:
        import boto3
        import botocore.session

        from orchestrator.config import data_loader

        if self._session is None:
            core = botocore.session.get_session()
            core.register_component("data_loader", data_loader())  # the config's, parsed once
            self._session = boto3.session.Session(botocore_session=core)

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
