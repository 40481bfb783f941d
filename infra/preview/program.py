"""Run the real Pulumi program in-process, without the CLI, providers or AWS.

The program is executed exactly as the Python language host does it
(`runpy.run_path("infra", run_name="__main__")`), with config passed as the strings the CLI
passes, under `pulumi.runtime` mocks that stand in for the engine and the AWS provider.

What the mocks stand in for, and so what only `pulumi preview` against AWS can show:
- provider Check/Diff: AWS-side validation, defaults, `tagsAll`, and which changes replace;
- computed outputs: in update mode they get realistic placeholders (ARNs, DNS names) so
  every `apply` runs; in preview mode they stay unknown, as the engine leaves them;
- `aws:ssm/getParameter` answers `resolve:ssm:<parameter>`, which is the value EC2 itself
  would resolve at launch, not a pinned AMI id.
"""

from __future__ import annotations

import asyncio
import hashlib
import runpy
import threading
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi.runtime
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.settings import reset_options

from infra.plan.config import PROJECT_ROOT
from infra.plan.names import digest
from infra.plan.stack import StackPlan
from infra.plan.stack_file import config_strings

PROJECT = "kiln"
PROGRAM_DIR = PROJECT_ROOT / "infra"
ACCOUNT_ID = "123456789012"
# The engine's marker for a value not known until the resource exists.
UNKNOWN = pulumi.runtime.rpc.UNKNOWN


@dataclass
class Registration:
    """One resource as the engine saw it: type, name, parent, inputs, options and outputs."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    options: dict[str, Any]
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]


@dataclass
class ProgramRun:
    stack: str
    preview: bool
    # The plan the program built from the config it was given: reports read this one, so a
    # stack is planned once per command and the report shows what the program declared.
    plan: StackPlan
    registrations: list[Registration]
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, name: str) -> Registration:
        return next(r for r in self.registrations if r.name == name)


def physical_name(type_: str, name: str, inputs: dict[str, Any]) -> str:
    """A given name (a bucket's is its `bucket` input), else as pulumi-aws autonames: the
    logical name as it is, '-', 7 lowercase hex characters."""
    given = inputs.get("bucket" if type_ == "aws:s3/bucket:Bucket" else "name")
    return str(given) if given else f"{name}-{digest(name)}"


def computed_outputs(type_: str, name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    """Plausible provider outputs, so update-mode runs exercise every downstream `apply`.
    ARNs and ids have the shapes AWS gives them (elasticloadbalancing ARNs with their /app/
    and hex ids, global IAM ARNs, ids that are names where the API's id is the name), because
    policy documents and rehearsals are built from them."""
    service = type_.split(":")[1].split("/")[0]
    physical = physical_name(type_, name, inputs)
    outputs: dict[str, Any] = {
        "id": physical,
        "arn": f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{type_.split(':')[-1].lower()}/{physical}",
        "name": physical,
    }
    elb = f"arn:aws:elasticloadbalancing:{region}:{ACCOUNT_ID}"
    if type_ == "aws:s3/bucket:Bucket":
        outputs.update(bucket=physical, arn=f"arn:aws:s3:::{physical}")
    elif type_ == "aws:iam/role:Role":
        outputs["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}"
    elif type_ == "aws:iam/instanceProfile:InstanceProfile":
        outputs["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:instance-profile/{physical}"
    elif type_ == "aws:iam/rolePolicy:RolePolicy":
        outputs["id"] = f"{inputs.get('role')}:{physical}"
    elif type_ == "aws:ec2/securityGroup:SecurityGroup":
        outputs.update(id=f"sg-{digest(name, 17)}", arn=f"arn:aws:ec2:{region}:{ACCOUNT_ID}:security-group/sg-{digest(name, 17)}")
    elif type_ == "aws:ec2/vpcEndpoint:VpcEndpoint":
        endpoint_id = f"vpce-{digest(name, 17)}"
        outputs.update(id=endpoint_id, arn=f"arn:aws:ec2:{region}:{ACCOUNT_ID}:vpc-endpoint/{endpoint_id}")
        if inputs.get("vpcEndpointType") == "Gateway":
            # The AWS-managed prefix list of the service's addresses, which the endpoint's routes name.
            outputs["prefixListId"] = f"pl-{digest(str(inputs.get('serviceName')), 8)}"
    elif type_ == "aws:ecr/repository:Repository":
        outputs["repositoryUrl"] = f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com/{physical}"
    elif type_ == "aws:lb/loadBalancer:LoadBalancer":
        suffix = f"app/{physical}/{digest(physical, 16)}"
        outputs.update(id=f"{elb}:loadbalancer/{suffix}", arn=f"{elb}:loadbalancer/{suffix}", arnSuffix=suffix,
                       dnsName=f"internal-{physical}-{digest(physical, 10)}.{region}.elb.amazonaws.com")
    elif type_ == "aws:lb/targetGroup:TargetGroup":
        suffix = f"targetgroup/{physical}/{digest(physical, 16)}"
        outputs.update(id=f"{elb}:{suffix}", arn=f"{elb}:{suffix}", arnSuffix=suffix)
    elif type_ == "aws:lb/listener:Listener":
        balancer = str(inputs.get("loadBalancerArn", "")).partition(":loadbalancer/")[2]
        arn = f"{elb}:listener/{balancer}/{digest(name, 16)}"
        outputs.update(id=arn, arn=arn)
    elif type_ == "aws:lb/listenerRule:ListenerRule":
        listener = str(inputs.get("listenerArn", "")).partition(":listener/")[2]
        arn = f"{elb}:listener-rule/{listener}/{digest(name, 16)}"
        outputs.update(id=arn, arn=arn)
    elif type_ == "aws:ec2/launchTemplate:LaunchTemplate":
        outputs.update(latestVersion=1, id=f"lt-{digest(name, 17)}")
    elif type_ == "aws:cloudwatch/logGroup:LogGroup":
        outputs["arn"] = f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{physical}"
    elif type_ == "pulumi-python:dynamic/kiln:ImageBuild":
        # What the provider returns once the tag is in ECR: a digest-pinned reference.
        # Whether a build actually runs (or the tag already exists) only AWS can say.
        image_digest = f"sha256:{hashlib.sha256(str(inputs.get('imageTag')).encode()).hexdigest()}"
        outputs.update(imageDigest=image_digest, imageUri=f"{inputs.get('repositoryUrl')}@{image_digest}", buildId=None, built=False)
    elif type_ == "pulumi-python:dynamic/kiln:ModelArtifact":
        outputs.update(uri=f"s3://{inputs.get('bucket')}/{inputs.get('prefix')}", fileCount=0, uploaded=False)
    elif type_ == "aws:cloudwatch/metricAlarm:MetricAlarm":
        outputs["arn"] = f"arn:aws:cloudwatch:{region}:{ACCOUNT_ID}:alarm:{physical}"
    elif type_ == "aws:lambda/function:Function":
        arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{physical}"
        outputs.update(arn=arn, qualifiedArn=f"{arn}:$LATEST", invokeArn=f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{arn}/invocations")
    elif type_ == "aws:autoscaling/group:Group":
        outputs["arn"] = f"arn:aws:autoscaling:{region}:{ACCOUNT_ID}:autoScalingGroup:{digest(name, 36)}:autoScalingGroupName/{physical}"
    elif type_ == "aws:secretsmanager/secret:Secret":
        # Secrets Manager ends a secret's ARN with '-' and six random characters of its own.
        arn = f"arn:aws:secretsmanager:{region}:{ACCOUNT_ID}:secret:{physical}-{digest(name, 6)}"
        outputs.update(id=arn, arn=arn)
    elif type_ == "aws:secretsmanager/secretVersion:SecretVersion":
        # The provider's `arn` of a version is its secret's.
        outputs["arn"] = inputs.get("secretId")
    return outputs


class KilnMocks(pulumi_mocks.Mocks):
    """Stands in for the AWS provider: echoes inputs, adds outputs only outside preview."""

    def __init__(self, preview: bool, region: str) -> None:
        self.preview = preview
        self.region = region

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict]:
        if not args.custom:
            return None, {}
        state = dict(args.inputs)
        if self.preview:
            # No id: the SDK leaves the id of a resource registered in preview unknown, as the
            # engine does for a resource not created yet (a security group's id included).
            return "", state
        outputs = computed_outputs(args.typ, args.name, args.inputs, self.region)
        return outputs.pop("id"), {**outputs, **state}

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict:
        if args.token == "aws:ssm/getParameter:getParameter":
            name = args.args["name"]
            return {"id": name, "name": name, "type": "String", "value": f"resolve:ssm:{name}", "insecureValue": f"resolve:ssm:{name}"}
        raise NotImplementedError(f"the offline runner has no answer for invoke {args.token}")


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock engine, with engine-faithful URNs and a record of every registration."""

    def __init__(self, mocks: KilnMocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self._lock = threading.Lock()

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # The engine keeps the full parent type chain and drops the root Stack type.
        if parent and (qualified := parent.split("::")[2]) != "pulumi:pulumi:Stack":
            type_ = f"{qualified}${type_}"
        return f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{type_}::{name}"

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        with self._lock:
            if any(r.urn == response.urn for r in self.registrations):
                raise ValueError(f"duplicate resource URN {response.urn}: two resources share a name")
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    custom=request.custom,
                    inputs=plain_values(json_format.MessageToDict(request.object)),
                    outputs={"id": response.id, **plain_values(json_format.MessageToDict(response.object))},
                    options={
                        "protect": request.protect,
                        "ignoreChanges": list(request.ignoreChanges),
                        "deleteBeforeReplace": request.deleteBeforeReplace,
                        "replaceOnChanges": list(request.replaceOnChanges),
                        "customTimeouts": json_format.MessageToDict(request.customTimeouts),
                    },
                    dependencies=list(request.dependencies),
                    property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                )
            )
        return response

    def RegisterResourceOutputs(self, request):  # noqa: N802 (gRPC method name)
        """A component's registered outputs become its state's outputs, as in the engine
        (the policy pack's stack rules read them there)."""
        with self._lock:
            for registration in self.registrations:
                if registration.urn == request.urn and not registration.custom:
                    registration.outputs = plain_values(json_format.MessageToDict(request.outputs))
        return super().RegisterResourceOutputs(request)


def plain_values(value: Any) -> Any:
    """Drop the SDK's internal keys (`__defaults`, `__provider`), as the engine does for
    policies, and give back the integers that protobuf's Struct carries as floats."""
    if isinstance(value, dict):
        return {k: plain_values(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [plain_values(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def run_program(stack: str, config: dict[str, Any], preview: bool, mocks: KilnMocks | None = None) -> ProgramRun:
    """Execute infra/ once under mocks; `config` is the stack file's `config:` mapping.
    `mocks` replaces the offline provider (the rehearsal deploys into a stand-in account)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        reset_options()
        pulumi.runtime.set_all_config(config_strings(config))
        mocks = mocks or KilnMocks(preview=preview, region=str(config.get("aws:region", "us-east-1")))
        monitor = RecordingMonitor(mocks)
        pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)

        program_globals: dict[str, Any] = {}

        @pulumi.runtime.test
        def program() -> None:
            program_globals.update(runpy.run_path(str(PROGRAM_DIR), run_name="__main__"))

        program()
        root = pulumi.runtime.get_root_resource()
        outputs = _resolve_outputs(getattr(root, "outputs", {}) or {}, loop)
        return ProgramRun(stack=stack, preview=preview, plan=program_globals["plan"],
                          registrations=_tree_order(monitor.registrations), outputs=outputs)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _tree_order(registrations: list[Registration]) -> list[Registration]:
    """Parents before children, siblings by type and name: the engine registers resources
    concurrently, and a plan that reorders itself between runs would read as a change."""
    children: dict[str, list[Registration]] = {}
    urns = {r.urn for r in registrations}
    for registration in registrations:
        parent = registration.parent if registration.parent in urns else ""
        children.setdefault(parent, []).append(registration)
    ordered: list[Registration] = []

    def visit(parent: str) -> None:
        for child in sorted(children.get(parent, []), key=lambda r: (r.type.startswith("kiln:"), r.type, r.name)):
            ordered.append(child)
            visit(child.urn)

    visit("")
    return ordered


def _resolve_outputs(outputs: dict[str, Any], loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    async def resolve(value: Any) -> Any:
        output = pulumi.Output.from_input(value)
        known = await output.is_known()
        return await output.future() if known else UNKNOWN

    return {name: loop.run_until_complete(resolve(value)) for name, value in outputs.items()}

