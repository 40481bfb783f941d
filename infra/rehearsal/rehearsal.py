"""`kiln rehearse STACK`: the stack's serving path run on this machine as AWS would run it.

1. A stand-in account (moto over TLS on 127.0.0.1) with a VPC shaped like the stack's network.
2. The Pulumi program deployed into it: bucket and policy, roles with the program's own policy
   documents, load balancer, target groups, listener rules, launch templates, groups, and each
   model uploaded by the upload resource's own code (infra/rehearsal/provider.py).
3. IAM enforced from then on: every later request is checked against its caller's policies.
4. Each instance's runtime started from its launch template's user data, with its instance
   role's credentials, fetching its model from the stand-in S3 (infra/rehearsal/instances.py).
5. A gateway that applies the listener's rules and target group health checks, and invokes
   the activator handler for Lambda target groups (infra/rehearsal/gateway.py): each served
   model must become healthy and answer its own input example through it; a model that scales
   to zero is woken by the real activator with the activator role's credentials, and put back
   to sleep the way the idle alarm does.

Every step is recorded with what it showed; the first failure of a served model stops that
served model's later steps, not the others'.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.activator.handler import Activator, Settings
from infra.components.user_data import runtime_env_file
from infra.operate.live import read_stack_status
from infra.operate.state import ANSWERING
from infra.plan.config import StackFile, read_stack
from infra.preview.program import ProgramRun, Registration, run_program
from infra.rehearsal.gateway import Answer, Gateway
from infra.rehearsal.instances import InstanceDied, InstanceLauncher
from infra.rehearsal.local_aws import Credentials, LocalAws, local_aws
from infra.rehearsal.provider import RehearsalDeployError, StandInMocks
from infra.rehearsal.registry import RegistryMirror, mirrored_registry
from runtime.contract import HIGH_RESOLUTION_PERIOD_SECONDS, IN_FLIGHT_METRIC, METRIC_NAMESPACE, parse_metric_dimensions
from runtime.settings import variable

READY_TIMEOUT_SECONDS = 300.0
# The runtime publishes the in-flight metric once per period from READY on.
METRIC_WAIT_PERIODS = 3
# At most this many requests to reach one served model through a weighted rule.
ATTEMPTS_PER_SERVED_MODEL = 20


@dataclass
class Step:
    name: str
    ok: bool
    detail: str


@dataclass
class RehearsalReport:
    stack: str
    steps: list[Step] = field(default_factory=list)
    # What the stand-in account could not hold as AWS would (shown, never silently dropped).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def record(self, name: str, ok: bool, detail: str) -> bool:
        self.steps.append(Step(name, ok, detail))
        return ok


@dataclass
class ServedModelUnderTest:
    """One served model and what the deployed stack holds for it."""

    endpoint: str
    name: str
    path: str
    group: str
    target_group: str
    example: bytes | None
    activator: Registration | None

    @property
    def label(self) -> str:
        return f"{self.endpoint}/{self.name}"


def _tagged(registration: Registration, endpoint: str, served_model: str) -> bool:
    tags = registration.inputs.get("tags") or {}
    if isinstance(tags, list):  # autoscaling groups list tags as {key, value, propagateAtLaunch}
        tags = {t["key"]: t["value"] for t in tags}
    return tags.get("kiln:endpoint") == endpoint and tags.get("kiln:served-model") == served_model


def _one(run: ProgramRun, type_: str, endpoint: str, served_model: str, test: Callable[[Registration], bool] = lambda _: True,
         ) -> Registration | None:
    found = [r for r in run.of_type(type_) if _tagged(r, endpoint, served_model) and test(r)]
    return found[0] if found else None


def _input_example(model_dir: Path) -> bytes | None:
    """The model's saved serving input (MLflow writes it beside MLmodel at log time)."""
    from mlflow.models import Model

    info = Model.load(str(model_dir)).saved_input_example_info or {}
    path = model_dir / info["serving_input_path"] if info.get("serving_input_path") else None
    return path.read_bytes() if path and path.is_file() else None


def served_models_under_test(run: ProgramRun) -> list[ServedModelUnderTest]:
    """Every served model of the plan with its group, target groups, activator and example."""
    uploads = {r.inputs["digest"]: Path(r.inputs["sourceDir"]) for r in run.of_type("pulumi-python:dynamic/kiln:ModelArtifact")}
    found = []
    for endpoint in run.plan.endpoints:
        for served in endpoint.served_models:
            group = _one(run, "aws:autoscaling/group:Group", served.endpoint, served.name)
            target_group = _one(run, "aws:lb/targetGroup:TargetGroup", served.endpoint, served.name,
                                lambda r: r.inputs.get("targetType") != "lambda")
            template = _one(run, "aws:ec2/launchTemplate:LaunchTemplate", served.endpoint, served.name)
            if group is None or target_group is None or template is None:
                raise LookupError(f"{served.endpoint}/{served.name}: the program declared no group, target group "
                                  "or launch template tagged for it")
            env = runtime_env_file(base64.b64decode(template.inputs["userData"]).decode())
            model_dir = uploads.get(env.get("KILN_MODEL_DIGEST", ""))
            found.append(ServedModelUnderTest(
                endpoint=served.endpoint, name=served.name, path=endpoint.path, group=group.outputs["name"],
                target_group=target_group.outputs["arn"], example=_input_example(model_dir) if model_dir else None,
                activator=_one(run, "aws:lambda/function:Function", served.endpoint, served.name),
            ))
    return found


def stand_in_references(aws: LocalAws, stack_file: StackFile) -> dict[str, Any]:
    """Config values naming what the stack uses but does not create (its VPC, subnets and their
    route tables, the gateway's certificate), replaced by equivalents made in the stand-in
    account: the stack's own ids do not exist there."""
    ec2 = aws.client("ec2")
    network = stack_file.config.network
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]

    def subnets(count: int, offset: int) -> list[str]:
        return [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{offset + i}.0/24", AvailabilityZone=zones[i % len(zones)],
                                  )["Subnet"]["SubnetId"] for i in range(count)]

    private = subnets(len(network.private_subnet_ids), 0)
    replaced: dict[str, Any] = {"kiln:network": {"vpcId": vpc, "privateSubnetIds": private}}
    if network.public_subnet_ids:
        replaced["kiln:network"]["publicSubnetIds"] = subnets(len(network.public_subnet_ids), 100)
    if network.vpc_endpoints is not None:
        replaced["kiln:network"]["vpcEndpoints"] = {
            **network.vpc_endpoints.model_dump(by_alias=True),
            "routeTableIds": _route_tables(ec2, vpc, private, len(network.vpc_endpoints.route_table_ids)),
        }
    gateway = stack_file.raw.get("kiln:gateway")
    if isinstance(gateway, dict) and gateway.get("certificateArn"):
        certificate = aws.client("acm").request_certificate(DomainName="gateway.kiln-rehearsal.internal")
        replaced["kiln:gateway"] = {**gateway, "certificateArn": certificate["CertificateArn"]}
    return replaced


def _route_tables(ec2: Any, vpc: str, subnets: list[str], count: int) -> list[str]:
    """`count` route tables of the stand-in VPC, between them associated with every subnet."""
    tables = [ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in range(count)]
    for index, subnet in enumerate(subnets if tables else []):
        ec2.associate_route_table(RouteTableId=tables[index % count], SubnetId=subnet)
    return tables


class Rehearsal:
    """One rehearsal of one stack; `run()` returns its report."""

    def __init__(self, stack: str, work_dir: Path, tracking_uri: str | None = None, registry: bool = True,
                 runtime_command: list[str] | None = None, progress: Callable[[str], None] = lambda _: None) -> None:
        self.stack_file = read_stack(stack, tracking_uri)
        self.work_dir = work_dir
        self.registry = registry
        self.runtime_command = runtime_command
        self.progress = progress
        self.report = RehearsalReport(self.stack_file.name)
        self.role_credentials: dict[str, Credentials] = {}

    def run(self) -> RehearsalReport:
        region = str(self.stack_file.raw.get("aws:region", "us-east-1"))
        with ExitStack() as cleanup:
            self.progress("starting the stand-in account")
            aws, enforce = cleanup.enter_context(local_aws(region))
            self.report.record("stand-in account", True, f"moto over TLS at {aws.endpoint}; IAM unchecked while deploying")
            config = {**self.stack_file.raw, **stand_in_references(aws, self.stack_file)}
            elsewhere = sorted({served.model_uri for endpoint in self.stack_file.config.endpoints
                                for served in endpoint.served_models if not served.model_uri.startswith("models:/")})
            if self.registry and elsewhere:
                self.report.notes.append(f"no registry mirror: {', '.join(elsewhere)} name no registry version, so the "
                                         "models are resolved from the stack's store directly")
            elif self.registry:
                self.progress("mirroring the stack's models into an MLflow tracking server")
                mirror = cleanup.enter_context(mirrored_registry(aws, self.stack_file, self.work_dir))
                config["kiln:mlflowTrackingUri"] = mirror.tracking_uri
                self.report.record("registry", True, self._registry_detail(mirror))
            run = self._deploy(config, aws)
            if run is None:
                return self.report
            roles = [r.outputs["arn"] for r in run.of_type("aws:iam/role:Role")]
            self.role_credentials = {arn: aws.assume_role(arn, "kiln-rehearsal") for arn in roles}
            enforce()
            self.report.record("IAM enforced", True, "every later request is authorized against its caller's policies")
            self._serve(aws, run, cleanup)
        return self.report

    def _registry_detail(self, mirror: RegistryMirror) -> str:
        return (f"`mlflow server` at {mirror.tracking_uri} (sqlite, artifacts in s3://{mirror.bucket}); "
                f"{', '.join(mirror.models)} resolved over REST")

    def _deploy(self, config: dict[str, Any], aws: LocalAws) -> ProgramRun | None:
        self.progress("deploying the program into the stand-in account")
        mocks = StandInMocks(aws)
        try:
            run = run_program(self.stack_file.name, config, preview=False, mocks=mocks)
        except RehearsalDeployError as error:
            self.report.record("deploy", False, f"the account refused {error}")
            return None
        created = sum(1 for r in run.registrations if r.custom and r.type in mocks.provider.creates)
        offline = sum(1 for r in run.registrations if r.custom) - created
        self.report.record("deploy", True, f"{created} resources created in the account by the program's own inputs; "
                                           f"{offline} off the serving path kept offline outputs")
        self.report.notes.extend(mocks.provider.skipped)
        return run

    def _serve(self, aws: LocalAws, run: ProgramRun, cleanup: ExitStack) -> None:
        models = served_models_under_test(run)
        launcher = InstanceLauncher(aws, [m.group for m in models], self.role_credentials, self.work_dir,
                                    self.runtime_command)
        cleanup.callback(launcher.stop)
        listener = run.of_type("aws:lb/listenerRule:ListenerRule")[0].inputs["listenerArn"]
        activators = {}
        for model in models:
            if model.activator is not None:
                activators[model.activator.inputs["environment"]["variables"]["KILN_ACTIVATOR_TARGET_GROUP_ARN"]] = (
                    self._activator(aws, model.activator, launcher).handle_request)
        gateway = Gateway(aws, listener, launcher.address_of, activators)
        cleanup.callback(gateway.stop)
        launcher.launch_pending()
        launcher.watch()
        gateway.start_health_checks()
        for model in models:
            self._rehearse_served_model(aws, model, gateway, launcher)
        self.progress("reading the stack's live state as `kiln status` does")
        self.report.record("kiln status", *self._status(aws))
        # SIGTERM: each runtime drains and uploads the inference-table rows still in memory.
        launcher.stop()
        for model in models:
            if uri := self._capture_uri(model, launcher):
                self.report.record(f"{model.label} captures its requests", *self._captured(aws, uri, model, launcher))
        self.report.notes.extend(launcher.notes)
        if launcher.failures:
            self.report.record("instances", False, "; ".join(launcher.failures))

    def _status(self, aws: LocalAws) -> tuple[bool, str]:
        """What `kiln status` reads from the account once every served model was exercised:
        each one READY (or SCALED_TO_ZERO, after its sleep), found by its tags alone."""
        status = read_stack_status(self.stack_file.name, self.stack_file.config, aws.client)
        return status.answering, "; ".join(
            f"{served.endpoint}/{served.served_model} {served.state.value}"
            + ("" if served.state in ANSWERING else f" ({', '.join(served.reasons)})")
            for served in status.served_models)

    def _activator(self, aws: LocalAws, function: Registration, launcher: InstanceLauncher) -> Activator:
        """The activator handler with its Lambda's environment and its role's credentials."""
        credentials = self.role_credentials[function.inputs["role"]]
        return Activator(Settings.from_environment(function.inputs["environment"]["variables"]),
                         aws.client("autoscaling", credentials), aws.client("elbv2", credentials),
                         aws.client("ec2", credentials), address_of=launcher.address_of,
                         ssm=aws.client("ssm", credentials))

    def _rehearse_served_model(self, aws: LocalAws, model: ServedModelUnderTest, gateway: Gateway,
                               launcher: InstanceLauncher) -> None:
        autoscaling = aws.client("autoscaling")
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[model.group])["AutoScalingGroups"][0]
        from_zero = group["DesiredCapacity"] == 0
        if model.example is None:
            self.report.record(f"{model.label} answers", False, "the model has no saved input example to send")
            return
        if from_zero:
            self.progress(f"sending {model.label}'s input example from zero: the activator wakes it")
            if not self.report.record(f"{model.label} answers from zero", *self._answers(model, gateway)):
                return
        self.progress(f"waiting for {model.label} to pass its target group's health checks")
        if not self.report.record(f"{model.label} healthy", *self._wait_healthy(model, gateway, launcher)):
            return
        self.progress(f"sending {model.label}'s input example through its target group")
        if not self.report.record(f"{model.label} answers", *self._answers(model, gateway)):
            return
        self.report.record(f"{model.label} publishes {IN_FLIGHT_METRIC}", *self._metric_published(aws, model, launcher))
        if model.activator is not None:
            self.report.record(f"{model.label} sleeps", *self._sleeps(aws, model, launcher))

    def _metric_published(self, aws: LocalAws, model: ServedModelUnderTest, launcher: InstanceLauncher,
                          ) -> tuple[bool, str]:
        """The scaling metric reached CloudWatch with the instance role (within a few periods)."""
        instance = next(i for i in launcher.instances.values() if i.group == model.group)
        wanted = dict(parse_metric_dimensions(instance.env.get(variable("metric_dimensions"), "")))
        if not wanted:
            return False, "the user data sets no metric dimensions: the in-flight scaling policy gets no data"
        cloudwatch = aws.client("cloudwatch")
        deadline = time.monotonic() + METRIC_WAIT_PERIODS * HIGH_RESOLUTION_PERIOD_SECONDS
        while time.monotonic() < deadline:
            metrics = cloudwatch.list_metrics(Namespace=METRIC_NAMESPACE, MetricName=IN_FLIGHT_METRIC)["Metrics"]
            for metric in metrics:
                if {d["Name"]: d["Value"] for d in metric["Dimensions"]} == wanted:
                    return True, f"{METRIC_NAMESPACE}/{IN_FLIGHT_METRIC} {wanted} put with the instance role"
            time.sleep(1)
        return False, (f"no {METRIC_NAMESPACE}/{IN_FLIGHT_METRIC} with {wanted} after {METRIC_WAIT_PERIODS} periods; "
                       f"the runtime's log:\n{instance.log_tail()}")

    @staticmethod
    def _capture_uri(model: ServedModelUnderTest, launcher: InstanceLauncher) -> str | None:
        instances = [i for i in launcher.instances.values() if i.group == model.group]
        return instances[0].env.get(variable("capture_uri")) if instances else None

    def _captured(self, aws: LocalAws, uri: str, model: ServedModelUnderTest, launcher: InstanceLauncher,
                  ) -> tuple[bool, str]:
        """The rows of the requests just sent reached the endpoint's prefix with the instance role."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        keys = [item["Key"] for item in aws.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
        if not keys:
            instance = next(i for i in launcher.instances.values() if i.group == model.group)
            return False, f"no inference-table rows under {uri} after drain; the runtime's log:\n{instance.log_tail()}"
        return True, f"{len(keys)} object(s) under {uri} put with the instance role, e.g. {keys[0].removeprefix(prefix)}"

    def _wait_healthy(self, model: ServedModelUnderTest, gateway: Gateway, launcher: InstanceLauncher) -> tuple[bool, str]:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        started = time.monotonic()
        while time.monotonic() < deadline:
            if gateway.healthy_targets(model.target_group):
                return True, f"healthy in {time.monotonic() - started:.0f} s by the planned health check"
            dead = [i for i in launcher.instances.values() if i.group == model.group and i.process.poll() is not None]
            if dead and len(dead) == sum(1 for i in launcher.instances.values() if i.group == model.group):
                return False, (f"the runtime exited with code {dead[0].process.returncode} before it was healthy:\n"
                               f"{dead[0].log_tail()}")
            time.sleep(0.5)
        states = "; ".join(f"{target}: {state.last}" for (group, target), state in gateway.health.items()
                           if group == model.target_group) or "no target registered"
        return False, f"not healthy within {READY_TIMEOUT_SECONDS:.0f} s ({states})"

    def _answers(self, model: ServedModelUnderTest, gateway: Gateway) -> tuple[bool, str]:
        assert model.example is not None
        answers: list[Answer] = []
        for _ in range(ATTEMPTS_PER_SERVED_MODEL):
            try:
                answer = gateway.send("POST", model.path, model.example, {"Content-Type": "application/json"})
            except InstanceDied as error:
                return False, str(error)
            answers.append(answer)
            if answer.headers.get("x-kiln-served-model") == model.name or answer.status != 200:
                break
        last = answers[-1]
        if last.status != 200:
            return False, f"{model.path} answered {last.status}: {last.text()[:500]}"
        if last.headers.get("x-kiln-served-model") != model.name:
            return False, f"{len(answers)} requests to {model.path} never reached it (its traffic share is 0 %?)"
        via = "the activator, which woke the group and forwarded" if last.target == "activator" else (
            f"its target group to {last.target}")
        return True, f"200 from {model.name} via {via}: {last.text()[:120]}"

    def _sleeps(self, aws: LocalAws, model: ServedModelUnderTest, launcher: InstanceLauncher) -> tuple[bool, str]:
        """The idle alarm's action, with the activator role: take the route, group to zero."""
        assert model.activator is not None
        variables = model.activator.inputs["environment"]["variables"]
        outcome = self._activator(aws, model.activator, launcher).handle_alarm({"alarmData": {"state": {"value": "ALARM"}}})
        rules = aws.client("elbv2").describe_rules(ListenerArn=variables["KILN_LISTENER_ARN"])["Rules"]
        routed = [g["TargetGroupArn"] for r in rules for a in r["Actions"]
                  for g in (a.get("ForwardConfig") or {}).get("TargetGroups", [])]
        group = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[model.group])["AutoScalingGroups"][0]
        if variables["KILN_ACTIVATOR_TARGET_GROUP_ARN"] not in routed or group["DesiredCapacity"] != 0:
            return False, f"after the idle alarm: {json.dumps(outcome)}, desired {group['DesiredCapacity']}"
        return True, "the idle alarm's action took the route back to the activator and set the group to 0"


def rehearse(stack: str, work_dir: Path, tracking_uri: str | None = None, registry: bool = True,
             runtime_command: list[str] | None = None, progress: Callable[[str], None] = lambda _: None,
             ) -> RehearsalReport:
    return Rehearsal(stack, work_dir, tracking_uri, registry, runtime_command, progress).run()

