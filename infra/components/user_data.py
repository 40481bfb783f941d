"""Instance user-data, rendered from infra/components/templates/user_data.sh.j2.

It only starts the image's own entrypoint (the Kiln runtime): there is no second way to
serve a model on an instance. The script runs at first boot; the systemd units it writes start
the runtime and report the instance ready to its group (the launch lifecycle hook) at every
boot, which is what brings a warm-pool instance back serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from infra.plan.config import ConfigError
from infra.plan.scaling import LAUNCH_HOOK_NAME
from infra.plan.stack import ServedModelPlan
from runtime.contract import READINESS_PATH
from runtime.settings import RuntimeSettings

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Deployment:
    """Where this served model's image, files and logs live once the stack exists."""

    registry: str
    image: str
    model_artifact_uri: str
    model_digest: str
    log_group: str
    # The artifact bucket, which also holds the inference tables' rows.
    artifact_bucket: str = ""
    # Registry identity for /version (the S3 URI only carries the digest); empty when the
    # served model's URI is not a registry version.
    model_name: str = ""
    model_version: str = ""
    # The ARN of the token-hash secret the stack created for the endpoint, if it made one.
    token_secret: str | None = None


# EC2 takes at most 16 KB of user data, before base64 encoding
# (docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html).
USER_DATA_LIMIT_BYTES = 16 * 1024


class UserDataTooLarge(ConfigError):
    """The rendered script is over EC2's limit: a stack-file problem (its environmentVars are
    what grows it), reported as one, naming the served model and what to shorten."""


def render_user_data(plan: ServedModelPlan, deployment: Deployment) -> str:
    """The first-boot script; UserDataTooLarge if it would not fit EC2's 16 KB."""
    settings = plan.runtime_settings(deployment.model_artifact_uri, deployment.model_digest,
                                     deployment.model_name, deployment.model_version,
                                     capture_bucket=deployment.artifact_bucket,
                                     created_token_secret=deployment.token_secret)
    script = _render(plan, deployment, settings)
    size = len(script.encode())
    if size > USER_DATA_LIMIT_BYTES:
        raise UserDataTooLarge(f"stacks/Pulumi.{plan.tags['kiln:stack']}.yaml", [
            f"endpoints ({plan.endpoint}).servedModels ({plan.name}).environmentVars: the instance user data would "
            f"be {size:,} bytes, over EC2's limit of {USER_DATA_LIMIT_BYTES:,}; shorten the values (a long one can "
            "live in Secrets Manager or SSM and be written as a reference)"
        ])
    return script


def _render(plan: ServedModelPlan, deployment: Deployment, settings: RuntimeSettings) -> str:
    return _TEMPLATES.get_template("user_data.sh.j2").render(
        endpoint=plan.endpoint,
        served_model=plan.name,
        readiness_path=READINESS_PATH,
        install_docker=not plan.profile.has_gpu,
        gpu=plan.profile.has_gpu,
        registry=deployment.registry,
        image=deployment.image,
        log_group=deployment.log_group,
        port=settings.port,
        stop_seconds=plan.stop_timeout_seconds,
        runtime_env=settings.as_env(),
        environment_vars=plan.environment_vars,
        group_name=plan.group_name,
        lifecycle_hook=LAUNCH_HOOK_NAME,
        ready_timeout=plan.scaling.launch_hook_timeout_seconds,
        s3_regional_endpoint=plan.s3_regional_endpoint,
    )


# Where the user data writes the runtime's environment (docker's --env-file format).
RUNTIME_ENV_FILE = "/etc/kiln-runtime.env"


def runtime_env_file(user_data: str) -> dict[str, str]:
    """The variables a rendered user data writes into the runtime's env file, read back from
    the script itself: the rehearsal starts the runtime with exactly these, not a second copy.
    docker reads the file one KEY=value per line, without quoting; a later line wins."""
    lines = user_data.splitlines()
    opening = f"cat > {RUNTIME_ENV_FILE} <<'ENV'"
    if opening not in lines:
        raise ValueError(f"the user data writes no {RUNTIME_ENV_FILE} (expected a line {opening!r})")
    start = lines.index(opening) + 1
    end = lines.index("ENV", start)
    return dict(line.split("=", 1) for line in lines[start:end] if line.strip() and not line.startswith("#"))
