"""`kiln status STACK`: the live state of a deployed stack, one word per served model.

Reads the account with boto3 the usual way (profile, region, credentials and endpoint from
the environment or the options here), so it also reads a stand-in account such as moto's
server. Exit 0 when every served model answers (READY, or SCALED_TO_ZERO behind its
activator), 1 otherwise, 2 when the state cannot be read at all.
"""

from __future__ import annotations

import json
import sys
import time

import boto3
import click
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError, ProfileNotFound
from click.core import ParameterSource
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from infra.commands.output import console, errors, user_errors
from infra.operate.live import read_stack_status, session_clients
from infra.operate.state import ServingState, StackStatus
from infra.plan.config import load_stack

STATE_STYLES = {ServingState.READY: "bold green", ServingState.SCALED_TO_ZERO: "cyan",
                ServingState.UPDATING: "yellow", ServingState.NOT_READY: "bold red"}

# What each failure to read the account is, in the words that start its message.
AWS_ERRORS: dict[type[Exception], str] = {
    NoCredentialsError: ("no AWS credentials: `kiln status` reads the deployed stack from the account; pass --profile, "
                         "or set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: "),
    ProfileNotFound: "",
    EndpointConnectionError: "cannot reach AWS: ",
    ClientError: "AWS refused to describe the stack (the caller needs autoscaling, elasticloadbalancing, ec2 and "
                 "cloudwatch Describe* permissions): ",
    BotoCoreError: "cannot read the stack's live state: ",
}


@click.command("status", help="Show the live state of STACK's served models (READY, NOT_READY, UPDATING, SCALED_TO_ZERO).")
@click.argument("stack")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (one per read with --watch).")
@click.option("--watch", is_flag=True, help="Read again every --interval seconds until every served model answers.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds between reads with --watch.")
@click.option("--timeout", type=click.FloatRange(min=0), help="With --watch: give up (exit 1) after this many seconds.")
@click.option("--region", help="AWS region (default: the stack's aws:region).")
@click.option("--profile", help="AWS profile (default: boto3's, e.g. AWS_PROFILE).")
@click.option("--endpoint-url", help="Send every AWS request here (default: boto3's, e.g. AWS_ENDPOINT_URL).")
def status_command(stack: str, as_json: bool, watch: bool, interval: float, timeout: float | None,
                   region: str | None, profile: str | None, endpoint_url: str | None) -> None:
    interval_given = click.get_current_context().get_parameter_source("interval") is not ParameterSource.DEFAULT
    if not watch and (interval_given or timeout is not None):
        # One read would answer at once: a pipeline that meant to wait for a rollout must not
        # take that for its outcome.
        raise click.UsageError("--interval and --timeout apply to --watch; add --watch to read until every served "
                               "model answers")
    with user_errors(AWS_ERRORS):
        name, config = load_stack(stack)
        session = boto3.session.Session(profile_name=profile, region_name=region or config.region)
        clients = session_clients(session, endpoint_url)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = read_stack_status(name, config, clients)
            show(status, as_json)
            if not watch or status.answering or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(interval)
    sys.exit(0 if status.answering else 1)


def show(status: StackStatus, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(status.as_json()))
    else:
        print_status(console, status)
        errors.print(f"read at {time.strftime('%H:%M:%S')}", style="dim")


def print_status(out: Console, status: StackStatus) -> None:
    """A row per served model, then what explains each one that is not plainly READY."""
    table = Table(title=f"Stack {status.stack} ({status.region})", title_justify="left")
    for column in ("served model", "state", "desired", "in service", "pending", "warm", "healthy", "model", "image"):
        table.add_column(column, overflow="fold")
    for served in status.served_models:
        group = served.group
        numbers = ([str(group.desired), str(group.in_service), str(group.pending), str(group.warm), str(group.healthy)]
                   if group else ["–"] * 5)
        table.add_row(f"{served.endpoint}/{served.served_model}", f"[{STATE_STYLES[served.state]}]{served.state}[/]",
                      *numbers, escape(group.model or "?") if group else "–", escape(group.image or "?") if group else "–")
    out.print(table)
    for served in status.served_models:
        lines = [*served.reasons]
        group = served.group
        if group is not None:
            refresh = group.refresh
            if refresh is not None and refresh.rolled_back and not refresh.active:
                lines.append(f"last instance refresh {refresh.status}: {refresh.rollback_reason or refresh.status_reason}")
            lines += [f"alarm {name} in ALARM: {reason}" for name, reason in group.alarms_in_alarm]
            lines += [f"{a.time:%Y-%m-%d %H:%M} {a.status}: {a.description}" for a in group.activities]
        if lines:
            out.print(f"[bold]{served.endpoint}/{served.served_model}[/] ({group.name if group else 'no group'})")
            for line in lines:
                out.print(f"  {escape(line)}", highlight=False)
