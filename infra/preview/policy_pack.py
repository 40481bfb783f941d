"""Run the CrossGuard pack in policies/ against a mocked program run, as the engine would.

`pulumi preview --policy-pack policies` starts the pack through the Python language host
(`python -u -m pulumi.policy <engine> <pack dir>`, cwd = the pack, stack config in
PULUMI_CONFIG), reads the gRPC port from its first stdout line and then calls the Analyzer
service: ConfigureStack, GetAnalyzerInfo, Configure (config reconciled from schema defaults,
the pack's initial config and --policy-pack-config), Remediate/Analyze per resource with
its inputs, AnalyzeStack with every resource's outputs. This module does the same with the
registrations of `infra.preview.program.run_program`, so CI runs the very pack an operator runs.

Gaps against a real engine (see docs/policies.md): no provider Check (no autonaming or
provider defaults), no `tagsAll`, no diff, and component outputs are what the component
registered. A policy that raises is reported as an error, never as a pass.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from infra.plan.config import PROJECT_ROOT
from infra.plan.stack_file import config_strings
from infra.preview.program import PROJECT, ProgramRun, Registration

POLICIES_DIR = PROJECT_ROOT / "policies"
ORGANIZATION = "organization"
LEVELS = ("advisory", "mandatory", "remediate", "disabled")
# The version the Python policy SDK reports for every pack (its own comes from PulumiPolicy.yaml).
SDK_PACK_VERSION = "0.0.1"
# The pack imports pulumi and grpc before it listens; a cold CI machine takes a few seconds.
START_TIMEOUT_SECONDS = 60.0
CALL_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 5.0


class PolicyPackError(Exception):
    """The pack could not give a verdict: it did not start, its config is invalid, or a policy raised."""


@dataclass(frozen=True)
class PolicyViolation:
    policy: str
    level: str
    urn: str
    message: str
    description: str
    fix: str

    @property
    def blocking(self) -> bool:
        # The engine downgrades a remediate-level violation that survived remediation to mandatory.
        return self.level in ("mandatory", "remediate")

    def as_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class PolicyCheck:
    pack: str
    pack_version: str
    resources: int
    violations: list[PolicyViolation]

    @property
    def mandatory(self) -> list[PolicyViolation]:
        return [v for v in self.violations if v.blocking]

    @property
    def advisory(self) -> list[PolicyViolation]:
        return [v for v in self.violations if not v.blocking]

    @property
    def passed(self) -> bool:
        return not self.mandatory

    def as_json(self) -> dict[str, Any]:
        return {
            "policyPack": {"name": self.pack, "version": self.pack_version},
            "passed": self.passed,
            "mandatory": len(self.mandatory),
            "advisory": len(self.advisory),
            "violations": [v.as_json() for v in self.violations],
        }


# ---------------------------------------------------------------- policy pack config


@dataclass(frozen=True)
class PolicyConfig:
    """One policy's entry in a config: an enforcement level ("" = unchanged) and properties."""

    level: str = ""
    properties: Mapping[str, Any] | None = None


def parse_policy_pack_config(text: str, source: str) -> dict[str, PolicyConfig]:
    """`--policy-pack-config` JSON as the engine reads it (`parsePolicyPackConfig`)."""
    if not text.strip():
        return {}
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise PolicyPackError(f"{source}: not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise PolicyPackError(f"{source}: must be a JSON object of policy name → level or settings")
    config: dict[str, PolicyConfig] = {}
    for name, value in document.items():
        if isinstance(value, str):
            entry = PolicyConfig(level=_level(value, name, source))
        elif isinstance(value, dict):
            properties = dict(value)
            level = properties.pop("enforcementLevel", "")
            if not isinstance(level, str):
                raise PolicyPackError(f"{source}: {name}.enforcementLevel must be one of {', '.join(LEVELS)}")
            entry = PolicyConfig(level=_level(level, name, source) if level else "", properties=properties or None)
        else:
            raise PolicyPackError(f"{source}: {name}: {value!r} is not a valid value; must be a string or object")
        if entry.level or entry.properties:
            config[name] = entry
    return config


def _level(value: str, name: str, source: str) -> str:
    if value not in LEVELS:
        raise PolicyPackError(f"{source}: {name}: {value!r} is not an enforcement level ({', '.join(LEVELS)})")
    return value


def _level_name(level: int) -> str:
    return analyzer_pb2.EnforcementLevel.Name(level).lower()


def _apply(result: dict[str, PolicyConfig], given: Mapping[str, PolicyConfig]) -> dict[str, PolicyConfig]:
    """The engine's `applyConfig`: "all" sets every level, then each named policy on top."""
    result = dict(result)
    all_level = given.get("all", PolicyConfig()).level
    if all_level:
        result = {name: PolicyConfig(all_level, entry.properties) for name, entry in result.items()}
    for name, entry in given.items():
        current = result.get(name, PolicyConfig())
        properties = dict(current.properties or {})
        properties.update(entry.properties or {})
        result[name] = PolicyConfig(entry.level or current.level, properties or current.properties)
    return result


def reconcile_config(info: analyzer_pb2.AnalyzerInfo, given: Mapping[str, PolicyConfig]) -> dict[str, PolicyConfig]:
    """Schema defaults and each policy's level, then the pack's initial config, then the file;
    validated against each policy's schema (`ReconcilePolicyPackConfig`)."""
    known = {policy.name for policy in info.policies}
    unknown = sorted(name for name in given if name != "all" and name not in known)
    if unknown:
        # The engine ignores these silently; a typo would then quietly keep the default.
        raise PolicyPackError(f"policy pack config names unknown policies {unknown}; policies: {', '.join(sorted(known))}")
    result: dict[str, PolicyConfig] = {}
    schemas: dict[str, dict[str, Any]] = {}
    for policy in info.policies:
        schema = json_format.MessageToDict(policy.configSchema, preserving_proto_field_name=True)
        properties = {k: v for k, v in schema.get("properties", {}).items()}
        defaults = {k: v["default"] for k, v in properties.items() if "default" in v}
        result[policy.name] = PolicyConfig(_level_name(policy.enforcementLevel), defaults or None)
        if properties or schema.get("required"):
            schemas[policy.name] = {"type": "object", "properties": properties, **({"required": schema["required"]} if schema.get("required") else {})}
    initial = {
        name: PolicyConfig(_level_name(entry.enforcementLevel), json_format.MessageToDict(entry.properties) or None)
        for name, entry in info.initialConfig.items()
    }
    result = _apply(_apply(result, initial), given)
    problems = []
    for name, schema in schemas.items():
        try:
            jsonschema.validate(dict(result[name].properties or {}), schema)
        except jsonschema.ValidationError as error:
            where = ".".join(str(p) for p in error.absolute_path)
            problems.append(f"{name}{'.' + where if where else ''}: {error.message}")
    if problems:
        raise PolicyPackError("invalid policy pack config:\n  " + "\n  ".join(problems))
    return result


# ---------------------------------------------------------------- the pack process


def _struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(json.loads(json.dumps(values)))
    return struct


def _duration_seconds(text: str) -> float:
    """Go durations as the SDK sends customTimeouts ("1h30m", "5m", "90s") → seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|h|m|s)", text or ""))


def _options(registration: Registration) -> analyzer_pb2.AnalyzerResourceOptions:
    options = registration.options
    timeouts = options.get("customTimeouts") or {}
    return analyzer_pb2.AnalyzerResourceOptions(
        protect=bool(options.get("protect")),
        ignoreChanges=list(options.get("ignoreChanges", [])),
        deleteBeforeReplace=bool(options.get("deleteBeforeReplace")),
        deleteBeforeReplaceDefined=bool(options.get("deleteBeforeReplace")),
        customTimeouts=analyzer_pb2.AnalyzerResourceOptions.CustomTimeouts(
            create=_duration_seconds(timeouts.get("create", "")),
            update=_duration_seconds(timeouts.get("update", "")),
            delete=_duration_seconds(timeouts.get("delete", "")),
        ),
        parent=registration.parent,
    )


@dataclass(frozen=True)
class _Provider:
    """The default aws provider the engine would have created; the mocks never register it."""

    urn: str
    name: str
    properties: dict[str, Any]

    def message(self) -> analyzer_pb2.AnalyzerProviderResource:
        return analyzer_pb2.AnalyzerProviderResource(
            type="pulumi:providers:aws", properties=_struct(self.properties), urn=self.urn, name=self.name
        )


class _PackProcess:
    """`python -u -m pulumi.policy 127.0.0.1:0 .` in the pack dir; always stopped on exit."""

    def __init__(self, pack_dir: Path, env: dict[str, str]) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:0", "."],
            cwd=pack_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )

    def port(self, timeout: float) -> int:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise PolicyPackError(f"the policy pack printed no port within {timeout:g} s\n{self.stderr()}")
        line = self.process.stdout.readline().decode(errors="replace").strip()
        if not line.isdigit():
            if not line:  # it exited; let it finish writing its traceback
                try:
                    self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    pass
            raise PolicyPackError(f"the policy pack did not start (first output line {line!r})\n{self.stderr()}")
        return int(line)

    def stderr(self, limit: int = 4000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:].strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
        self._stderr.close()


def check_policies(
    run: ProgramRun,
    stack_config: Mapping[str, Any],
    policy_config: Mapping[str, PolicyConfig] | None = None,
    pack_dir: Path = POLICIES_DIR,
) -> PolicyCheck:
    """Start the pack, replay the engine's analyzer calls for `run`, and collect violations.

    `stack_config` is the stack file's `config:` mapping the program ran with; the pack gets
    it in PULUMI_CONFIG, as the language host passes it, so rules can read the environment.
    """
    env = {
        **os.environ,
        "PULUMI_PROJECT": PROJECT,
        "PULUMI_STACK": run.stack,
        "PULUMI_ORGANIZATION": ORGANIZATION,
        "PULUMI_DRY_RUN": "true" if run.preview else "false",
        "PULUMI_CONFIG": json.dumps(config_strings(dict(stack_config))),
    }
    pack = _PackProcess(pack_dir, env)
    channel: grpc.Channel | None = None
    try:
        port = pack.port(START_TIMEOUT_SECONDS)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = analyzer_pb2_grpc.AnalyzerStub(channel)
        try:
            return _analyze(stub, run, stack_config, policy_config or {}, pack_dir)
        except grpc.RpcError as error:
            raise PolicyPackError(
                f"the policy pack failed ({error.code().name}): {error.details()}\n{pack.stderr()}".strip()
            ) from None
    finally:
        if channel is not None:
            channel.close()
        pack.stop()


def _analyze(
    stub: analyzer_pb2_grpc.AnalyzerStub,
    run: ProgramRun,
    stack_config: Mapping[str, Any],
    policy_config: Mapping[str, PolicyConfig],
    pack_dir: Path,
) -> PolicyCheck:
    timeout = CALL_TIMEOUT_SECONDS
    stack_urn = f"urn:pulumi:{run.stack}::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-{run.stack}"
    stub.ConfigureStack(
        analyzer_pb2.AnalyzerStackConfigureRequest(
            stack=run.stack,
            project=PROJECT,
            organization=ORGANIZATION,
            dry_run=run.preview,
            config=config_strings(dict(stack_config)),
            tags={"pulumi:project": PROJECT, "pulumi:runtime": "python"},
        ),
        timeout=timeout,
    )
    info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=timeout)
    config = reconcile_config(info, policy_config)
    stub.Configure(
        analyzer_pb2.ConfigureAnalyzerRequest(
            policyConfig={
                name: analyzer_pb2.PolicyConfig(
                    enforcementLevel=analyzer_pb2.EnforcementLevel.Value(entry.level.upper() or "ADVISORY"),
                    properties=_struct(entry.properties or {}),
                )
                for name, entry in config.items()
            }
        ),
        timeout=timeout,
    )
    descriptions = {p.name: p.description for p in info.policies}
    fixes = {p.name: p.remediation_steps for p in info.policies}
    remediating = any(entry.level == "remediate" for entry in config.values())

    provider_version = version("pulumi_aws").replace(".", "_")
    provider = _Provider(
        urn=f"urn:pulumi:{run.stack}::{PROJECT}::pulumi:providers:aws::default_{provider_version}",
        name=f"default_{provider_version}",
        properties={"region": str(stack_config.get("aws:region", "")), "version": version("pulumi_aws")},
    )
    violations: list[PolicyViolation] = []

    own_version = pack_version(pack_dir)

    def collect(response: analyzer_pb2.AnalyzeResponse, default_urn: str) -> None:
        for diagnostic in response.diagnostics:
            description = diagnostic.description or descriptions.get(diagnostic.policyName, "")
            message = diagnostic.message.removeprefix(description).strip() or description
            # The SDK names the pack with the version it always reports; say the pack's own.
            message = message.replace(f"'{info.name}@v{SDK_PACK_VERSION}'", f"'{info.name}@{own_version}'")
            violations.append(
                PolicyViolation(
                    policy=diagnostic.policyName,
                    level=_level_name(diagnostic.enforcementLevel),
                    urn=diagnostic.urn or default_urn,
                    message=message,
                    description=description,
                    fix=fixes.get(diagnostic.policyName, ""),
                )
            )

    for registration in run.registrations:
        properties = registration.inputs
        request_provider = provider.message() if registration.custom and registration.type.startswith("aws:") else None
        if remediating:
            remediated = stub.Remediate(_analyze_request(registration, properties, request_provider), timeout=timeout)
            for remediation in remediated.remediations:
                if remediation.HasField("properties"):
                    properties = json_format.MessageToDict(remediation.properties)
        response = stub.Analyze(_analyze_request(registration, properties, request_provider), timeout=timeout)
        collect(response, registration.urn)

    resources = [
        analyzer_pb2.AnalyzerResource(
            type="pulumi:pulumi:Stack", urn=stack_urn, name=f"{PROJECT}-{run.stack}", properties=_struct(run.outputs)
        ),
        analyzer_pb2.AnalyzerResource(
            type="pulumi:providers:aws", urn=provider.urn, name=provider.name, properties=_struct(provider.properties),
            parent=stack_urn,
        ),
    ]
    for registration in run.registrations:
        resources.append(
            analyzer_pb2.AnalyzerResource(
                type=registration.type,
                urn=registration.urn,
                name=registration.name,
                properties=_struct(registration.outputs),
                options=_options(registration),
                provider=provider.message() if registration.custom and registration.type.startswith("aws:") else None,
                parent=registration.parent,
                dependencies=registration.dependencies,
                propertyDependencies={
                    key: analyzer_pb2.AnalyzerPropertyDependencies(urns=urns)
                    for key, urns in registration.property_dependencies.items()
                },
            )
        )
    collect(stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources), timeout=timeout), stack_urn)
    return PolicyCheck(pack=info.name, pack_version=own_version, resources=len(run.registrations), violations=violations)


def _analyze_request(
    registration: Registration, properties: Mapping[str, Any], provider: analyzer_pb2.AnalyzerProviderResource | None
) -> analyzer_pb2.AnalyzeRequest:
    return analyzer_pb2.AnalyzeRequest(
        type=registration.type,
        properties=_struct(properties),
        urn=registration.urn,
        name=registration.name,
        options=_options(registration),
        provider=provider,
    )


def pack_version(pack_dir: Path) -> str:
    """Python packs take their version only from PulumiPolicy.yaml (the SDK always reports 0.0.1)."""
    try:
        document = yaml.safe_load((pack_dir / "PulumiPolicy.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return SDK_PACK_VERSION
    return str(document.get("version", SDK_PACK_VERSION)) if isinstance(document, dict) else SDK_PACK_VERSION


def load_policy_pack_config(path: Path | None) -> dict[str, PolicyConfig]:
    if path is None:
        return {}
    try:
        return parse_policy_pack_config(path.read_text(), str(path))
    except OSError as error:
        raise PolicyPackError(f"{path}: cannot read the policy pack config: {error.strerror}") from None
