"""Whether this instance is on its way into (or waiting in) an Auto Scaling warm pool.

A warm-pool instance boots once, runs its user data and the runtime until the launch hook
completes, then is stopped (docs/scaling.md). While it boots towards the pool, its runtime is
READY and would publish its in-flight peaks, all zeros, under the same dimensions as the
serving instances: target tracking averages them in and under-counts the load just when the
group grows. EC2 Auto Scaling tells an instance where it is going through the instance metadata
item `autoscaling/target-lifecycle-state` (`Warmed:Stopped`, `Warmed:Running`,
`Warmed:Hibernated` on the way into the pool; `InService` once it serves)
(https://docs.aws.amazon.com/autoscaling/ec2/userguide/retrieving-target-lifecycle-state-through-imds.html).
The runtime publishes only while that state does not start with `Warmed:`.

IMDSv2 (the launch template requires tokens): a PUT for a session token, then the GET with it.
The endpoint is botocore's AWS_EC2_METADATA_SERVICE_ENDPOINT when set (tests point it at a
local stand-in). An instance outside a group, or no IMDS at all, has no warm pool: publish.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_PATH = "/latest/api/token"
STATE_PATH = "/latest/meta-data/autoscaling/target-lifecycle-state"
WARM_POOL_PREFIX = "Warmed:"
# Short: the answer comes from the hypervisor, and publishing must not wait on it.
TIMEOUT_SECONDS = 1.0
TOKEN_TTL_SECONDS = 60


def target_lifecycle_state(endpoint: str | None = None) -> str | None:
    """The instance's target lifecycle state, or None where there is none to read."""
    base = (endpoint or os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    try:
        token_request = urllib.request.Request(
            base + TOKEN_PATH, method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)})
        with urllib.request.urlopen(token_request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - IMDS URL
            token = response.read().decode()
        state_request = urllib.request.Request(base + STATE_PATH, headers={"X-aws-ec2-metadata-token": token})
        with urllib.request.urlopen(state_request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - IMDS URL
            return response.read().decode().strip()
    except (urllib.error.URLError, TimeoutError, OSError):
        return None


def headed_for_warm_pool(endpoint: str | None = None) -> bool:
    """True while the instance boots into, or waits in, a warm pool: its load is not the group's."""
    state = target_lifecycle_state(endpoint)
    return state is not None and state.startswith(WARM_POOL_PREFIX)
