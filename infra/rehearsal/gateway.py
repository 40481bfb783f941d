"""The ALB's part in the rehearsal: a listener's rules as the stand-in account holds them,
applied in priority order (path patterns, weighted forwards), each target group's health
check as declared (path, matcher, timeout, thresholds), and Lambda target groups answered by
the activator handler, as the ALB invokes it.

Rules and targets are read from the account on every request, so a route the activator
moves is followed at once, as on AWS. Health checks run at min(interval, 1 s): the
thresholds and timeouts are the planned ones, the wall-clock time to healthy is not
(interval × healthy threshold on AWS; the report says it).
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.local.router import Backend, WeightedChoice
from infra.rehearsal.instances import InstanceDied
from infra.rehearsal.local_aws import LocalAws

CHECK_EVERY_SECONDS = 1.0
ActivatorHandler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    target_group: str = ""
    target: str = ""

    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class TargetHealth:
    """One target's standing with the ALB: consecutive passes and failures of its checks."""

    healthy: bool = False
    passes: int = 0
    failures: int = 0
    last: str = "not checked yet"


def path_pattern_matches(pattern: str, path: str, ignore_case: bool = False) -> bool:
    """ALB match strings: `*` any run of characters, `?` exactly one; path patterns are
    case-sensitive, HTTP header values are not (AWS::ElasticLoadBalancingV2::ListenerRule
    HttpHeaderConfig, "The comparison strings are case insensitive")."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, path, re.IGNORECASE if ignore_case else 0) is not None


def rule_matches(rule: dict[str, Any], path: str, headers: dict[str, str]) -> bool:
    for condition in rule["Conditions"]:
        field_name = condition["Field"]
        if field_name == "path-pattern":
            values = (condition.get("PathPatternConfig") or {}).get("Values") or condition.get("Values", [])
            if not any(path_pattern_matches(v, path) for v in values):
                return False
        elif field_name == "http-header":
            config = condition["HttpHeaderConfig"]
            value = headers.get(config["HttpHeaderName"].lower(), "")
            if not any(path_pattern_matches(v, value, ignore_case=True) for v in config["Values"]):
                return False
        else:
            raise ValueError(f"the rehearsal's gateway does not apply {field_name} conditions (rule {rule['RuleArn']})")
    return True


@dataclass
class Gateway:
    aws: LocalAws
    listener_arn: str
    address_of: Callable[[str], str]
    activators: dict[str, ActivatorHandler]
    health: dict[tuple[str, str], TargetHealth] = field(default_factory=dict)
    _choices: dict[str, tuple[tuple[tuple[str, int], ...], WeightedChoice]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _checker: threading.Thread | None = None

    # --- health checks -------------------------------------------------------------------
    def check_targets_once(self) -> None:
        elbv2 = self.aws.client("elbv2")
        for group in elbv2.describe_target_groups()["TargetGroups"]:
            if group["TargetType"] == "lambda":
                continue
            for description in elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]:
                target = description["Target"]["Id"]
                state = self.health.setdefault((group["TargetGroupArn"], target), TargetHealth())
                self._check(group, target, state)

    def _check(self, group: dict[str, Any], target: str, state: TargetHealth) -> None:
        try:
            url = f"http://{self.address_of(target)}{group.get('HealthCheckPath', '/')}"
        except InstanceDied as error:
            state.healthy, state.last = False, str(error)
            return
        expected = {int(code) for code in group.get("Matcher", {}).get("HttpCode", "200").split(",")}
        try:
            with urllib.request.urlopen(url, timeout=group.get("HealthCheckTimeoutSeconds", 5)) as reply:
                status = reply.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            status, state.last = 0, f"{url}: {error}"
        passed = status in expected
        if status:
            state.last = f"{url} answered {status}"
        state.passes, state.failures = (state.passes + 1, 0) if passed else (0, state.failures + 1)
        if state.passes >= group.get("HealthyThresholdCount", 5):
            state.healthy = True
        elif state.failures >= group.get("UnhealthyThresholdCount", 2):
            state.healthy = False

    def start_health_checks(self) -> None:
        def loop() -> None:
            while not self._stop.wait(CHECK_EVERY_SECONDS):
                self.check_targets_once()

        self._checker = threading.Thread(target=loop, name="kiln-rehearsal-alb", daemon=True)
        self._checker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._checker:
            self._checker.join(10)

    def healthy_targets(self, target_group_arn: str) -> list[str]:
        return [t for (g, t), state in self.health.items() if g == target_group_arn and state.healthy]

    # --- requests ------------------------------------------------------------------------
    def send(self, method: str, path: str, body: bytes, headers: dict[str, str], timeout: float = 120) -> Answer:
        """One request through the listener, as the ALB routes it."""
        elbv2 = self.aws.client("elbv2")
        rules = elbv2.describe_rules(ListenerArn=self.listener_arn)["Rules"]
        lowered = {k.lower(): v for k, v in headers.items()}
        ordered = sorted(rules, key=lambda r: (r["IsDefault"], int(r["Priority"]) if r["Priority"].isdigit() else 0))
        rule = next(r for r in ordered if r["IsDefault"] or rule_matches(r, path, lowered))
        action = rule["Actions"][0]
        if action["Type"] == "fixed-response":
            fixed = action["FixedResponseConfig"]
            return Answer(int(fixed["StatusCode"]), {"content-type": fixed.get("ContentType", "text/plain")},
                          fixed.get("MessageBody", "").encode())
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]
        weights = tuple((g["TargetGroupArn"], int(g.get("Weight", 1))) for g in groups)
        known = self._choices.get(rule["RuleArn"])
        if known is None or known[0] != weights:  # new, or the activator moved a share
            known = (weights, WeightedChoice([Backend(arn, arn, weight) for arn, weight in weights]))
            self._choices[rule["RuleArn"]] = known
        picked = known[1].next()
        if picked is None:
            return Answer(503, {}, b"no target group has weight in this rule")
        return self._forward(picked.url, method, path, body, headers, timeout)

    def _forward(self, target_group: str, method: str, path: str, body: bytes, headers: dict[str, str],
                 timeout: float) -> Answer:
        if target_group in self.activators:
            event = {"requestContext": {"elb": {"targetGroupArn": target_group}}, "httpMethod": method, "path": path,
                     "queryStringParameters": {}, "headers": {k.lower(): v for k, v in headers.items()},
                     "body": body.decode(), "isBase64Encoded": False}
            reply = self.activators[target_group](event)
            return Answer(reply["statusCode"], {k.lower(): v for k, v in reply.get("headers", {}).items()},
                          reply.get("body", "").encode(), target_group, "activator")
        registered = [t for (g, t) in self.health if g == target_group]
        if not registered:
            return Answer(503, {}, b"the target group has no registered targets", target_group)
        # With no healthy target the ALB fails open: it routes to every registered target.
        candidates = self.healthy_targets(target_group) or registered
        target = candidates[0]
        request = urllib.request.Request(f"http://{self.address_of(target)}{path}", data=body or None,
                                         headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return Answer(reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read(), target_group, target)
        except urllib.error.HTTPError as error:
            return Answer(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read(), target_group, target)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            return Answer(502, {}, json.dumps({"error_code": "BAD_GATEWAY", "message": str(error)}).encode(),
                          target_group, target)
