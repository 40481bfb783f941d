"""`kiln amis STACK`: the AMI ids AWS publishes today for the compute classes a stack uses,
as the `kiln:amis` block to pin or bump (docs/scaling.md, "AMIs").

It reads the stack file without validating it whole, so it also serves a prod stack that
cannot plan yet because its AMIs are not pinned.
"""

from __future__ import annotations

import boto3
import click
import yaml
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from infra.commands.output import console, fail, user_errors
from infra.plan.catalog import AMI_PARAMETERS, PROFILES, ComputeType, ami_class
from infra.plan.config import NAMESPACE, read_stack_file, resolve_stack_path

# What each failure to ask SSM is, in the words that start its message.
AWS_ERRORS: dict[type[Exception], str] = {
    NoCredentialsError: ("no AWS credentials: `kiln amis` reads AWS's public SSM parameters, which any account may "
                         "read; set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: "),
    EndpointConnectionError: "cannot reach AWS: ",
    ClientError: "AWS refused to read the public AMI parameters (the caller needs ssm:GetParameters): ",
    BotoCoreError: "cannot read the public AMI parameters: ",
}


def compute_classes(config: dict) -> list[str]:
    """The compute classes (cpu, gpu) the stack's served models boot."""
    classes = set()
    for endpoint in config.get(f"{NAMESPACE}:endpoints") or []:
        for served in endpoint.get("servedModels") or []:
            try:
                classes.add(ami_class(PROFILES[ComputeType(served.get("computeType"))]))
            except ValueError:
                fail(f"endpoints.{endpoint.get('name')}.servedModels.{served.get('name')}.computeType: "
                     f"{served.get('computeType')!r} is not a compute type (kiln plan says more)")
    return sorted(classes)


def published_amis(region: str, classes: list[str]) -> dict[str, str]:
    """The ids the public SSM parameters name now, in the stack's region."""
    names = {AMI_PARAMETERS[c]: c for c in classes}
    found = boto3.client("ssm", region_name=region).get_parameters(Names=list(names))
    if found["InvalidParameters"]:
        fail(f"{region} has no SSM parameter {', '.join(found['InvalidParameters'])}: "
             "that AMI is not published in this region")
    return {names[p["Name"]]: p["Value"] for p in found["Parameters"]}


@click.command(help="Print the AMI ids AWS publishes today for STACK's compute classes, as the kiln:amis block to pin.")
@click.argument("stack")
def amis(stack: str) -> None:
    with user_errors():
        path = resolve_stack_path(stack)
        config = read_stack_file(path)
    pinned = config.get(f"{NAMESPACE}:amis") or {}
    with user_errors(AWS_ERRORS):
        current = published_amis(str(config.get("aws:region")), compute_classes(config))
    for compute_class, ami in current.items():
        was = pinned.get(compute_class)
        state = "pinned" if was == ami else (f"pinned {was}: a bump rolls its groups" if was else "not pinned")
        console.print(f"{compute_class}: {ami} ({AMI_PARAMETERS[compute_class]}; {state})", highlight=False)
    console.print(f"\n# {path}", highlight=False)
    console.print(yaml.safe_dump({f"{NAMESPACE}:amis": current}, sort_keys=True).rstrip(), highlight=False)
