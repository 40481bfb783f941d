"""`kiln check STACK`: the policy pack against the stack's program, offline, for CI.

Exit 0 when no mandatory policy is violated, 1 when one is, 2 when no verdict could be
reached (invalid stack or policy config, a model that cannot be resolved, a policy that
raised): CI must never read a broken check as a pass.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from infra.commands.output import console, user_errors
from infra.commands.policy_pack_console import policy_levels, print_policy_check
from infra.commands.registry import require_reachable_registry, tracking_uri_option
from infra.plan.packaging import packaging_enforced_by_pack
from infra.preview.policy_pack import POLICIES_DIR, load_policy_pack_config
from infra.preview.report import build_plan_report

policy_pack_config_option = click.option(
    "--policy-pack-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON file of policy levels and settings, as `pulumi preview --policy-pack-config` takes.",
)


@click.command(help="Run the policy pack in policies/ against STACK offline (as `pulumi preview --policy-pack policies`).")
@click.argument("stack")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the violations.")
@policy_pack_config_option
@tracking_uri_option
@click.option("--preview", is_flag=True, help="Run as `pulumi preview` does: outputs of new resources stay unknown.")
@click.option(
    "--policy-pack",
    "pack_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=POLICIES_DIR,
    show_default="policies/",
    help="Policy pack directory, as `pulumi preview --policy-pack` takes.",
)
def check(
    stack: str, as_json: bool, policy_pack_config: Path | None, mlflow_tracking_uri: str | None, preview: bool, pack_dir: Path
) -> None:
    # Packaging findings that are pack rules are reported by the pack, beside the violations.
    with user_errors(), packaging_enforced_by_pack():
        policy_config = load_policy_pack_config(policy_pack_config)
        require_reachable_registry(stack, mlflow_tracking_uri)
        report = build_plan_report(
            stack, tracking_uri=mlflow_tracking_uri, preview=preview, policy_config=policy_config, pack_dir=pack_dir
        )
    assert report.policy is not None
    if as_json:
        click.echo(json.dumps(
            {"stack": report.plan.stack, "environment": report.plan.config.environment, "preview": preview,
             "levels": asdict(policy_levels(report.run)), **report.policy.as_json()},
            indent=2,
        ))
    else:
        print_policy_check(console, report.policy, report.run)
    sys.exit(0 if report.policy.passed else 1)
