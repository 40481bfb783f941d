"""EC2's part in the rehearsal: each instance an autoscaling group holds in the stand-in
account gets the runtime its launch template's user data would start.

What the instance's runtime gets, and from where, is what it gets on AWS: the env file the
rendered user data writes (read back from the launch template moto holds), credentials of
the role in the template's instance profile (assumed, as the instance metadata service hands
them out), the region, and nothing else of this machine's AWS settings. What differs is said
in one place, here: it runs in this machine's Python instead of the image's virtualenv, on a
loopback port instead of the instance's address, and without Docker, IMDS or a reboot; the two
settings it changes, each with a note in the report, are in `stand_in_env`.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.components.user_data import runtime_env_file
from infra.local.stack import free_port
from infra.plan.config import PROJECT_ROOT
from infra.rehearsal.local_aws import Credentials, LocalAws
from runtime.settings import variable

POLL_SECONDS = 0.5
# One runtime per group proves the path; more would only share this machine's cores.
INSTANCES_PER_GROUP = 1


class InstanceDied(Exception):
    """An instance's runtime exited: it will never become healthy."""


@dataclass
class RunningInstance:
    instance_id: str
    group: str
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def stand_in_env(group: str, env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The runtime env of an instance of `group` as the rehearsal runs it, and a note for each
    setting changed from the user data's: this machine's CPU stands in for the instance's GPUs,
    and an inference table captures every request, since the rehearsal sends a served model
    only a request or two and a sampled capture (10 % in the prod stack) would most often
    write no row to show that the instance role can put them."""
    env, notes = dict(env), []
    if env.get(variable("require_gpu")) == "true":
        env[variable("require_gpu")] = "false"
        notes.append(f"{group}: a GPU compute type; its runtime ran on this machine's CPU "
                     f"({variable('require_gpu')} off): device placement only shows on a GPU")
    sampling = variable("capture_sampling_fraction")
    if env.get(variable("capture_uri")) and float(env.get(sampling, "1")) < 1:
        notes.append(f"{group}: its runtime captured every request here ({sampling} {env[sampling]} on AWS), so the "
                     "rehearsal's few requests show in the inference table")
        env[sampling] = "1"
    return env, notes


class InstanceLauncher:
    """Starts a runtime for every InService instance of the watched groups, once each."""

    def __init__(self, aws: LocalAws, groups: list[str], role_credentials: dict[str, Credentials], log_dir: Path,
                 runtime_command: list[str] | None = None) -> None:
        self.aws = aws
        # Handed out before IAM was enforced, as EC2 holds them for the instance profile.
        self.role_credentials = role_credentials
        self.groups = groups
        self.log_dir = log_dir
        self.instances: dict[str, RunningInstance] = {}
        self.failures: list[str] = []
        # How an instance here differs from one on AWS, beyond what every instance shares.
        self.notes: list[str] = []
        self.runtime_command = runtime_command or [sys.executable, "-m", "runtime"]
        self._ports: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def address_of(self, instance_id: str) -> str:
        """Where an instance's runtime listens: what the activator and the gateway connect to.
        Before the runtime starts nothing answers there, as on a booting instance; once it
        has exited, asking is an error that carries its log (nothing will ever answer)."""
        with self._lock:
            port = self._ports.setdefault(instance_id, free_port())
            running = self.instances.get(instance_id)
        if running is not None and running.process.poll() is not None:
            raise InstanceDied(f"the runtime on {instance_id} ({running.group}) exited with code "
                               f"{running.process.returncode}:\n{running.log_tail()}")
        return f"127.0.0.1:{port}"

    def launch_pending(self) -> list[RunningInstance]:
        """Start the runtime on instances that have none yet; returns those started now."""
        started = []
        autoscaling = self.aws.client("autoscaling")
        for group in autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=self.groups)["AutoScalingGroups"]:
            in_service = [i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"]
            with self._lock:
                running = [i for i in in_service if i in self.instances]
                waiting = [i for i in in_service if i not in self.instances]
                if waiting and len(running) < INSTANCES_PER_GROUP:
                    started.append(self._start(group, waiting[0]))
                if len(in_service) > INSTANCES_PER_GROUP:
                    note = (f"{group['AutoScalingGroupName']}: {len(in_service)} instances in service; one runs a "
                            "runtime here, the others stay registered and unhealthy")
                    if note not in self.notes:
                        self.notes.append(note)
        return started

    def _start(self, group: dict[str, Any], instance_id: str) -> RunningInstance:
        template = group["LaunchTemplate"]
        ec2, iam = self.aws.client("ec2"), self.aws.client("iam")
        version = ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"],
                                                        Versions=[template["Version"]])["LaunchTemplateVersions"][0]
        data = version["LaunchTemplateData"]
        user_data = base64.b64decode(data.get("UserData", "")).decode()
        profile = data["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1]
        roles = iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"]
        credentials = self.role_credentials[roles[0]["Arn"]]
        port = self._ports.setdefault(instance_id, free_port())
        env, notes = stand_in_env(group["AutoScalingGroupName"], runtime_env_file(user_data))
        env.update({variable("host"): "127.0.0.1", variable("port"): str(port)})
        self.notes.extend(note for note in notes if note not in self.notes)
        # Nothing of this machine's AWS or Kiln settings, and a home of its own (so an empty
        # model cache and no ~/.aws): only what a new instance's container has.
        home = self.log_dir / instance_id
        home.mkdir(parents=True, exist_ok=True)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KILN_", "MLFLOW_"))}
        process_env = {**inherited, **env, **self.aws.process_env(credentials), "HOME": str(home),
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
        log_path = self.log_dir / f"{instance_id}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(self.runtime_command, env=process_env, stdout=log,
                                       stderr=subprocess.STDOUT, cwd=home)
        running = RunningInstance(instance_id, group["AutoScalingGroupName"], port, env, process, log_path)
        self.instances[instance_id] = running
        return running

    # --- watching while requests are held ---------------------------------------------
    def watch(self) -> None:
        """Keep starting runtimes for new instances in the background (an activator wakes a
        group while it holds a request), until `stop`."""
        def loop() -> None:
            while not self._stop.wait(POLL_SECONDS):
                try:
                    self.launch_pending()
                except Exception as error:  # reported, not raised: the thread has no caller
                    self.failures.append(f"starting an instance failed: {error}")
                    return

        self._watcher = threading.Thread(target=loop, name="kiln-rehearsal-ec2", daemon=True)
        self._watcher.start()

    def stop(self, grace_seconds: float = 15) -> None:
        """Stop watching and SIGTERM every runtime (they drain and exit); kill what lingers."""
        self._stop.set()
        if self._watcher:
            self._watcher.join(5)
        for instance in self.instances.values():
            if instance.process.poll() is None:
                instance.process.terminate()
        for instance in self.instances.values():
            try:
                instance.process.wait(grace_seconds)
            except subprocess.TimeoutExpired:
                instance.process.kill()
                instance.process.wait()
