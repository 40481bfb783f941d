"""The gateway (ALB): timeouts that never cut a request, TLS whenever it faces the internet."""

from __future__ import annotations

from collections.abc import Sequence

from policies.rules.resource_types import LISTENER, LOAD_BALANCER, SERVED_MODEL
from policies.rules.rule import (
    ADVISORY,
    MANDATORY,
    MANDATORY_IN_PROD,
    Config,
    Props,
    Resource,
    ResourceRule,
    StackRule,
    Violation,
    items,
    of_type,
    prop,
)

# The ALB closes a connection idle for longer than this unless told otherwise.
ALB_DEFAULT_IDLE_TIMEOUT_SECONDS = 60
# Databricks Model Serving's request timeout; clients written against it expect no more.
DATABRICKS_REQUEST_TIMEOUT_SECONDS = 597


def idle_timeout_above_request_timeout(resources: Sequence[Resource], config: Config) -> list[Violation]:
    """An idle timeout at or below the request timeout cuts slow predictions with a 504."""
    timeouts = [
        (served.props.get("requestTimeoutSeconds"), served.name)
        for served in of_type(resources, SERVED_MODEL)
        if served.props.get("requestTimeoutSeconds") is not None
    ]
    if not timeouts:
        return []
    longest, served_name = max(timeouts, key=lambda pair: pair[0])
    violations = []
    for balancer in of_type(resources, LOAD_BALANCER):
        idle = balancer.props.get("idleTimeout", ALB_DEFAULT_IDLE_TIMEOUT_SECONDS)
        if idle <= longest:
            violations.append(Violation(
                f"idleTimeout {idle:g} s is not above the longest request timeout {longest:g} s ({served_name}); "
                f"set idle_timeout to at least {longest + 1:g} s",
                balancer.urn,
            ))
    return violations


def _serves_tls(listener: Resource) -> bool:
    if listener.props.get("protocol") == "HTTPS":
        return bool(listener.props.get("certificateArn"))
    actions = items(listener.props.get("defaultActions"))
    return bool(actions) and all(
        prop(action, "type") == "redirect" and prop(action, "redirect.protocol") == "HTTPS" for action in actions
    )


def tls_when_internet_facing(resources: Sequence[Resource], config: Config) -> list[Violation]:
    """Kiln runs one gateway per stack, so every listener of the stack belongs to it."""
    public = [lb for lb in of_type(resources, LOAD_BALANCER) if lb.props.get("internal") is not True]
    if not public:
        return []
    listeners = of_type(resources, LISTENER)
    violations = [
        Violation(
            f"listener on port {listener.props.get('port')} speaks {listener.props.get('protocol')} "
            "on an internet-facing load balancer; serve HTTPS with an ACM certificate or redirect to HTTPS",
            listener.urn,
        )
        for listener in listeners
        if not _serves_tls(listener)
    ]
    has_https = any(
        listener.props.get("protocol") == "HTTPS" and listener.props.get("certificateArn") for listener in listeners
    )
    for balancer in public:
        if not has_https:
            violations.append(Violation(
                "the load balancer is internet-facing without an HTTPS listener; set gateway.certificateArn "
                "to an ACM certificate (or internetFacing: false)",
                balancer.urn,
            ))
    return violations


def auth_when_internet_facing(resources: Sequence[Resource], config: Config) -> list[Violation]:
    """Anyone who can reach an internet-facing gateway could call an endpoint that takes no
    token (and run up its bill); Databricks never serves without one."""
    if not any(lb.props.get("internal") is not True for lb in of_type(resources, LOAD_BALANCER)):
        return []
    return [
        Violation(
            f"{served.name} answers without a token on an "
            "internet-facing gateway; remove `auth: {enabled: false}` from the endpoint (auth is on by default "
            "there) or keep the gateway internal",
            served.urn,
        )
        for served in of_type(resources, SERVED_MODEL)
        if served.props.get("authRequired") is not True
    ]


def request_timeout_within_databricks(props: Props, config: Config) -> list[str]:
    timeout = props.get("requestTimeoutSeconds")
    limit = config.get("maxRequestTimeoutSeconds", DATABRICKS_REQUEST_TIMEOUT_SECONDS)
    if timeout is None or timeout <= limit:
        return []
    return [(f"requestTimeoutSeconds {timeout:g} is above {limit:g} s: clients and proxies in between often give up "
            "first, and one slow request holds a worker; lower it or make the call asynchronous")]


IDLE_TIMEOUT = StackRule(
    id="alb-idle-timeout-above-request-timeout",
    description="The ALB idle timeout is longer than every endpoint's request timeout.",
    levels=MANDATORY,
    resource_types=(LOAD_BALANCER, SERVED_MODEL),
    run=idle_timeout_above_request_timeout,
    fix="Set the load balancer's idle_timeout a few seconds above the longest requestTimeoutSeconds.",
)

TLS_WHEN_INTERNET_FACING = StackRule(
    id="internet-facing-requires-https",
    description="An internet-facing gateway serves HTTPS with a certificate and no plain HTTP.",
    levels=MANDATORY,
    resource_types=(LOAD_BALANCER, LISTENER),
    run=tls_when_internet_facing,
    fix="Set kiln:gateway.certificateArn (HTTP then only redirects to HTTPS), or keep the gateway internal.",
)

AUTH_WHEN_INTERNET_FACING = StackRule(
    id="internet-facing-requires-auth",
    description="Every endpoint behind an internet-facing gateway requires a bearer token.",
    levels=MANDATORY_IN_PROD,
    resource_types=(LOAD_BALANCER, SERVED_MODEL),
    run=auth_when_internet_facing,
    fix="Leave auth on for the endpoint (the default when kiln:gateway.internetFacing is true), or keep the gateway internal.",
)

REQUEST_TIMEOUT = ResourceRule(
    id="request-timeout-within-databricks",
    description="Request timeouts stay within Databricks' 597 s.",
    levels=ADVISORY,
    checks={SERVED_MODEL: request_timeout_within_databricks},
    fix="Lower requestTimeoutSeconds to 597 or less.",
    config={"maxRequestTimeoutSeconds": {"type": "number", "minimum": 1, "default": DATABRICKS_REQUEST_TIMEOUT_SECONDS}},
)

RULES = [IDLE_TIMEOUT, TLS_WHEN_INTERNET_FACING, AUTH_WHEN_INTERNET_FACING, REQUEST_TIMEOUT]
