"""Stack files that used to crash a command or be read wrong: each is refused with the file,
the key path and what to write instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.plan.config import KILN_TAGS_PER_RESOURCE, ConfigError, parse_stack_config, read_stack, read_stack_file
from infra.plan.stack import plan_stack
from infra.plan.stack_file import MAX_ARG_STRLEN
from tests.conftest import write_stack
from tests.stack_values import valid_values

SOURCE = "stacks/Pulumi.test.yaml"
SERVED = "endpoints[0].servedModels[0]"
DEV_TEXT = (Path(__file__).resolve().parents[3] / "stacks" / "Pulumi.dev.yaml").read_text()


def refusal(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        read_stack(str(path))
    assert str(caught.value).startswith(f"{path}: ")
    return caught.value.problems


def problems_for(values: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(values, SOURCE)
    return caught.value.problems


def served(values: dict[str, Any]) -> dict[str, Any]:
    return values["endpoints"][0]["servedModels"][0]


# --- bytes the Pulumi CLI would not read as we would ---------------------------------------------

@pytest.mark.parametrize(("data", "problem"), [
    (DEV_TEXT.encode("utf-16"), "is UTF-16 text; save it as UTF-8"),
    (DEV_TEXT.replace("debug", "d\xe9bug").encode("latin-1"), "is not UTF-8 text: byte 0xe9 on line 19 cannot be decoded"),
    (bytes(range(256)) * 4, "is not UTF-8 text: byte 0x80 on line 2"),
])
def test_a_stack_file_that_is_not_utf8_names_the_byte_and_line(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_bytes(data)

    [message] = refusal(path)
    assert message.startswith(problem)
    assert "save it as UTF-8" in message or "save the file as UTF-8" in message


def test_a_utf8_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_bytes(DEV_TEXT.encode("utf-8-sig"))

    assert read_stack_file(path)["kiln:environment"] == "dev"


def test_a_key_written_twice_is_refused_with_its_key_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(DEV_TEXT.replace("          workloadSize: Small\n",
                                     "          workloadSize: Small\n          workloadSize: Large\n"))

    assert refusal(path) == [
        "config.kiln:endpoints[0].servedModels[0] (line 14): key 'workloadSize' is written twice; the Pulumi CLI "
        "refuses a repeated key, so keep one"
    ]


def test_a_date_like_value_stays_the_text_it_was_written_as(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(DEV_TEXT.replace("{team: risk}", "{team: risk, since: 2026-11-27}"))

    assert read_stack(str(path)).config.endpoints[0].tags == {"team": "risk", "since": "2026-11-27"}


def test_a_yaml_tag_beyond_json_types_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(DEV_TEXT.replace("{team: risk}", "{team: !!binary aGVsbG8=}"))
    line = DEV_TEXT[:DEV_TEXT.index("{team: risk}")].count("\n") + 1

    assert refusal(path) == [
        f"config.kiln:endpoints[0].tags.team (line {line}): YAML tag !!binary is not a stack value; stack values are "
        "strings, numbers, booleans, lists and mappings"
    ]


def test_nested_aliases_that_expand_without_bound_are_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
              for i in range(1, 9)]
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("\n".join(lines) + "\nconfig: {aws:region: us-east-1, kiln:bomb: *a8}\n")

    [message] = refusal(path)
    assert message.startswith("expands to more than 100,000 values through its anchors and aliases")


def test_a_config_too_large_for_one_environment_variable_names_the_key(tmp_path: Path) -> None:
    config = read_stack_file(Path(__file__).resolve().parents[3] / "stacks" / "Pulumi.dev.yaml")
    config["kiln:endpoints"][0]["tags"] = {f"k{i}": "v" * 250 for i in range(40)}
    config["kiln:endpoints"][0]["servedModels"][0]["environmentVars"] = {"BLOB": "x" * MAX_ARG_STRLEN}
    path = write_stack(tmp_path, config, "dev")

    [message] = refusal(path)
    assert message.startswith("config.kiln:endpoints: ")
    assert "one environment variable (PULUMI_CONFIG), which Linux caps at 128 KiB" in message


# --- values pydantic would have coerced or let through --------------------------------------------

@pytest.mark.parametrize(("path", "value", "problem"), [
    (("endpoints", 0, "requestTimeoutSeconds"), True, "endpoints[0].requestTimeoutSeconds: Input should be a valid integer"),
    (("endpoints", 0, "requestTimeoutSeconds"), "60", "endpoints[0].requestTimeoutSeconds: Input should be a valid integer"),
    (("endpoints", 0, "requestTimeoutSeconds"), 60.0, "endpoints[0].requestTimeoutSeconds: Input should be a valid integer"),
    (("gateway", "internetFacing"), 1, "gateway.internetFacing: Input should be a valid boolean"),
    (("gateway", "internetFacing"), "false", "gateway.internetFacing: Input should be a valid boolean"),
    (("endpoints", 0, "tags", "team"), 7, "endpoints[0].tags.team: Input should be a valid string"),
    (("build", "timeoutMinutes"), False, "build.timeoutMinutes: Input should be a valid integer"),
])
def test_no_value_is_coerced_into_another_type(path: tuple[Any, ...], value: Any, problem: str) -> None:
    values = valid_values()
    values.setdefault("gateway", {})
    values.setdefault("build", {})
    values["endpoints"][0].setdefault("tags", {})
    target = values
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value

    [message] = problems_for(values)
    assert message.startswith(problem)


@pytest.mark.parametrize("qps", [float("inf"), float("nan")])
def test_infinite_or_nan_traffic_is_refused(qps: float) -> None:
    values = valid_values()
    del served(values)["workloadSize"]
    served(values).update(expectedQps=qps, expectedLatencyMs=40)

    [message] = problems_for(values)
    assert message.startswith(f"{SERVED}.expectedQps: Input should be a finite number")


def test_traffic_beyond_what_one_served_model_can_provision_says_how_much() -> None:
    values = valid_values()
    del served(values)["workloadSize"]
    served(values).update(expectedQps=1e300, expectedLatencyMs=40)

    assert problems_for(values) == [
        f"{SERVED}.expectedQps: 1e+300 QPS × 40 ms needs a peak concurrency of "
        f"{1e300 * 0.04 * 2:,.0f} (twice QPS × latency), more than the 1024 one served model can have; split the "
        "traffic across served models or endpoints, or check the units (QPS per served model, latency in ms)"
    ]


@pytest.mark.parametrize("instance", ["c6i.large", "c7i.large", "c7i.xlarge"])
def test_an_instance_type_too_small_for_one_worker_is_refused(instance: str) -> None:
    values = valid_values()
    served(values)["instanceType"] = instance

    [message] = problems_for(values)
    assert message.startswith(f"{SERVED}.instanceType: {instance} has ")
    assert "one CPU_MEDIUM worker needs 8 GiB + 2 GiB for the OS; choose one of c7i.2xlarge," in message


@pytest.mark.parametrize(("key", "value"), [
    ("name", "fraud-scorer\n"), ("servedModels.name", "champion\n"), ("servedModels.modelUri", "models:/fraud/12\n"),
    ("servedModels.environmentVars", {"LOG_LEVEL\n": "info"}),
])
def test_a_trailing_newline_is_not_part_of_a_valid_name(key: str, value: Any) -> None:
    values = valid_values()
    target = served(values) if key.startswith("servedModels.") else values["endpoints"][0]
    target[key.removeprefix("servedModels.")] = value

    assert problems_for(values)


@pytest.mark.parametrize(("tags", "problem"), [
    ({"aws:team": "risk"}, "tag key 'aws:team' starts with aws:, which is reserved"),
    ({"kiln:stack": "other"}, "tag key 'kiln:stack' starts with kiln:, which is reserved"),
    ({"k" * 129: "v"}, f"tag key '{'k' * 129}' is 129 characters, more than 128"),
    ({"team": "v" * 257}, "the value of tag 'team' is 257 characters, more than 256"),
    ({"team": "a;b"}, "the value of tag 'team' has characters AWS tags do not take: ';'"),
    ({f"t{i}": "v" for i in range(47)}, "47 tags; AWS takes 50 per resource and Kiln writes 4 of its own"),
])
def test_tags_beyond_aws_limits_are_refused(tags: dict[str, str], problem: str) -> None:
    values = valid_values()
    values["endpoints"][0]["tags"] = tags

    [message] = problems_for(values)
    assert message.startswith(f"endpoints[0].tags: {problem}")


def test_tags_within_aws_limits_are_kept() -> None:
    values = valid_values()
    tags = {f"team-{i}": "risk and fraud_ops/eu: a+b=c@d" for i in range(45)} | {"k" * 128: "v" * 256}
    values["endpoints"][0]["tags"] = tags

    assert parse_stack_config(values, SOURCE).endpoints[0].tags == tags


def test_an_unknown_region_is_refused_with_the_closest_known_one() -> None:
    values = valid_values()
    values["region"] = "eu-cental-1"

    assert problems_for(values) == [
        "region: unknown AWS region 'eu-cental-1' (none of the regions EC2 is in, by botocore's data); did you mean eu-central-1?"
    ]


@pytest.mark.parametrize(("cidrs", "problem"), [
    ([], "List should have at least 1 item"),
    (["10.0.0.0/8", "172.16.0.0/12", "10.0.0.0/8"], "CIDR blocks listed twice: 10.0.0.0/8"),
    (["10.1.2.3"], "'10.1.2.3' is not a CIDR block such as 10.0.0.0/8; did you mean 10.1.2.3/32?"),
    (["10.1.2.3/8"], "'10.1.2.3/8' is not a CIDR block such as 10.0.0.0/8; did you mean 10.0.0.0/8?"),
    (["2001:DB8::/32"], "'2001:DB8::/32' is not a CIDR block such as 10.0.0.0/8; did you mean 2001:db8::/32?"),
])
def test_allowed_cidrs_are_a_nonempty_list_of_distinct_canonical_blocks(cidrs: list[str], problem: str) -> None:
    values = valid_values()
    values["gateway"] = {"allowedCidrs": cidrs}

    [message] = problems_for(values)
    assert message.startswith(f"gateway.allowedCidrs: {problem}")


@pytest.mark.parametrize("uri", ["", "   ", "sqlite:///", "file:", " http://mlflow.internal:5000"])
def test_a_tracking_uri_that_names_no_store_is_refused(uri: str) -> None:
    values = valid_values()
    values["mlflowTrackingUri"] = uri

    [message] = problems_for(values)
    assert message.startswith(f"mlflowTrackingUri: {uri!r} names no MLflow store")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_shipped_stack_still_reads(stack: str) -> None:
    assert read_stack(stack).config.environment == stack


def test_the_yaml_loader_leaves_pyyaml_s_own_loader_alone() -> None:
    assert yaml.safe_load("since: 2026-11-27")["since"].year == 2026


def test_kiln_writes_as_many_tags_of_its_own_as_the_limit_leaves_room_for() -> None:
    stack_file = read_stack("prod")
    plan = plan_stack(stack_file.name, stack_file.config)

    for endpoint in plan.endpoints:
        own = next(e.tags for e in stack_file.config.endpoints if e.name == endpoint.name)
        for served in endpoint.served_models:
            assert len(served.tags) == len(own) + KILN_TAGS_PER_RESOURCE
