"""The stack plan's routing: endpoints, paths, listener priorities, traffic weights, names and tags.

The components copy these values into AWS unchanged (`traffic_percentage` becomes the
listener rule's forward weight, `listener_priority` its priority), so every expected value
here is what AWS would be asked for, worked out by hand in the comments.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.plan.capacity import DEFAULT_GPU_BATCH_SIZE
from infra.plan.catalog import CPU_START_SECONDS, GPU_START_SECONDS, ComputeType
from infra.plan.config import parse_stack_config
from infra.plan.stack import ServedModelPlan, StackPlan, endpoint_path, plan_stack

VPC = "vpc-0a1b2c3d4e5f60001"
PRIVATE = ["subnet-0a1b2c3d4e5f600a1", "subnet-0a1b2c3d4e5f600b1"]
PUBLIC = ["subnet-0a1b2c3d4e5f600a2", "subnet-0a1b2c3d4e5f600b2"]
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/3f2a9c1e-7b4d-4e8a-9f10-2c6d8e5a7b31"


def prod_values() -> dict[str, Any]:
    """stacks/Pulumi.prod.yaml as parsed values: a 90/10 CPU endpoint and a GPU endpoint."""
    return {
        "region": "us-east-1",
        "environment": "prod",
        "mlflowTrackingUri": "http://mlflow.internal:5000",
        "network": {"vpcId": VPC, "privateSubnetIds": PRIVATE, "publicSubnetIds": PUBLIC},
        "gateway": {"internetFacing": False, "certificateArn": CERTIFICATE, "allowedCidrs": ["10.0.0.0/8"]},
        "amis": {"cpu": "ami-0a1b2c3d4e5f60001", "gpu": "ami-0a1b2c3d4e5f60002"},
        "endpoints": [
            {
                "name": "fraud-scorer",
                "requestTimeoutSeconds": 597,
                "servedModels": [
                    {"name": "champion", "modelUri": "models:/fraud-scorer@champion", "computeType": "CPU_MEDIUM",
                     "expectedQps": 200, "expectedLatencyMs": 40, "environmentVars": {"LOG_LEVEL": "info"}},
                    {"name": "challenger", "modelUri": "models:/fraud-scorer@challenger", "computeType": "CPU_MEDIUM",
                     "workloadSize": "Small"},
                ],
                "trafficConfig": {"routes": [
                    {"servedModelName": "champion", "trafficPercentage": 90},
                    {"servedModelName": "challenger", "trafficPercentage": 10},
                ]},
                "tags": {"team": "risk", "cost-center": "cc-4411"},
            },
            {
                "name": "ticket-router",
                "requestTimeoutSeconds": 120,
                "servedModels": [
                    {"name": "champion", "modelUri": "models:/ticket-router@champion", "computeType": "GPU_MEDIUM",
                     "minProvisionedConcurrency": 2, "maxProvisionedConcurrency": 8, "expectedLatencyMs": 250,
                     "scaling": {"warmPool": {"minSize": 1}}},
                ],
                "tags": {"team": "support"},
            },
        ],
    }


def plan_of(values: dict[str, Any], stack: str = "prod") -> StackPlan:
    return plan_stack(stack, parse_stack_config(values, f"stacks/Pulumi.{stack}.yaml"))


def served_plan(plan: StackPlan, resource_name: str) -> ServedModelPlan:
    [served] = [s for s in plan.served_models if s.resource_name == resource_name]
    return served


# --- endpoints, paths, priorities ---------------------------------------------------------------

def test_every_endpoint_gets_the_databricks_invocation_path() -> None:
    plan = plan_of(prod_values())

    assert [(e.name, e.path) for e in plan.endpoints] == [
        ("fraud-scorer", "/serving-endpoints/fraud-scorer/invocations"),
        ("ticket-router", "/serving-endpoints/ticket-router/invocations"),
    ]
    assert endpoint_path("churn") == "/serving-endpoints/churn/invocations"


def test_listener_priorities_come_from_the_endpoint_name() -> None:
    # printf fraud-scorer | sha256sum → 14a866f7…; 0x14a866f7 = 346580727; 346580727 % 49999 + 1 = 37659
    # printf ticket-router | sha256sum → c8921623…; 0xc8921623 = 3365017123; 3365017123 % 49999 + 1 = 34425
    plan = plan_of(prod_values())

    assert {e.name: e.listener_priority for e in plan.endpoints} == {"fraud-scorer": 37659, "ticket-router": 34425}


def test_endpoint_and_its_served_models_carry_the_endpoint_request_timeout() -> None:
    plan = plan_of(prod_values())

    assert [e.request_timeout_seconds for e in plan.endpoints] == [597, 120]
    assert [s.request_timeout_seconds for s in plan.served_models] == [597, 597, 120]


def test_served_models_are_listed_in_stack_file_order() -> None:
    plan = plan_of(prod_values())

    assert [s.resource_name for s in plan.served_models] == [
        "fraud-scorer.champion", "fraud-scorer.challenger", "ticket-router.champion",
    ]
    assert [[s.name for s in e.served_models] for e in plan.endpoints] == [["champion", "challenger"], ["champion"]]
    assert [s.endpoint for s in plan.served_models] == ["fraud-scorer", "fraud-scorer", "ticket-router"]


# --- traffic: what becomes each target group's forward weight ------------------------------------

def test_route_percentages_become_the_served_models_weights() -> None:
    plan = plan_of(prod_values())

    assert [(s.resource_name, s.traffic_percentage) for s in plan.served_models] == [
        ("fraud-scorer.champion", 90), ("fraud-scorer.challenger", 10), ("ticket-router.champion", 100),
    ]


def test_zero_percent_route_keeps_its_served_model_and_target_group_at_weight_zero() -> None:
    values = prod_values()
    values["endpoints"][0]["trafficConfig"]["routes"] = [
        {"servedModelName": "champion", "trafficPercentage": 100},
        {"servedModelName": "challenger", "trafficPercentage": 0},
    ]

    plan = plan_of(values)
    challenger = served_plan(plan, "fraud-scorer.challenger")

    assert challenger.traffic_percentage == 0
    assert served_plan(plan, "fraud-scorer.champion").traffic_percentage == 100
    # Still warm: Small is 4 units on c7i.2xlarge (1 unit each) → 4 instances, not 0.
    assert (challenger.capacity.sizing.min_instances, challenger.capacity.sizing.max_instances) == (4, 4)
    assert challenger.target_group_name.startswith("kiln-prod-fraud-s-challe-")


def test_route_order_does_not_change_which_served_model_gets_which_weight() -> None:
    values = prod_values()
    values["endpoints"][0]["trafficConfig"]["routes"].reverse()

    plan = plan_of(values)

    assert [s.traffic_percentage for s in plan.endpoints[0].served_models] == [90, 10]


# --- names, environment, tags ---------------------------------------------------------------------

def test_target_group_names_are_salted_with_the_vpc_and_port() -> None:
    # "kiln-prod-fraud-scorer-champion" is 31 characters, but the salt always adds a hash:
    # printf 'kiln-prod-fraud-scorer-champion|vpc-0a1b2c3d4e5f60001:8080' | sha256sum → 028ef60…
    # budget 32 - 7 - 4 = 21: kiln 4, prod 4, then champion min(8, 13 // 2 = 6), fraud-scorer 7.
    plan = plan_of(prod_values())

    assert served_plan(plan, "fraud-scorer.champion").target_group_name == "kiln-prod-fraud-s-champi-028ef60"


def test_a_new_vpc_renames_every_target_group() -> None:
    before = plan_of(prod_values())
    values = prod_values()
    values["network"]["vpcId"] = "vpc-0a1b2c3d4e5f60002"

    after = plan_of(values)

    for old, new in zip(before.served_models, after.served_models, strict=True):
        assert old.target_group_name != new.target_group_name
        assert len(new.target_group_name) <= 32


def test_served_model_tags_add_endpoint_tags_and_identity_to_the_stack_tags() -> None:
    plan = plan_of(prod_values())

    assert plan.tags == {"kiln:stack": "prod", "kiln:environment": "prod"}
    assert served_plan(plan, "fraud-scorer.champion").tags == {
        "kiln:stack": "prod", "kiln:environment": "prod", "team": "risk", "cost-center": "cc-4411",
        "kiln:endpoint": "fraud-scorer", "kiln:served-model": "champion",
    }
    assert served_plan(plan, "ticket-router.champion").tags == {
        "kiln:stack": "prod", "kiln:environment": "prod", "team": "support",
        "kiln:endpoint": "ticket-router", "kiln:served-model": "champion",
    }


def test_stack_tags_name_the_stack_and_its_environment_separately() -> None:
    plan = plan_of(prod_values(), stack="prod-eu")

    assert plan.stack == "prod-eu"
    assert plan.tags == {"kiln:stack": "prod-eu", "kiln:environment": "prod"}
    assert plan.gateway.load_balancer_name == "kiln-prod-eu"


def test_the_runtime_is_told_its_identity_workers_timeouts_and_metric_dimensions() -> None:
    served = served_plan(plan_of(prod_values()), "fraud-scorer.champion")

    settings = served.runtime_settings("s3://bucket/models/abc/", "ab" * 32, "fraud-scorer", "3")
    gpu = served_plan(plan_of(prod_values()), "ticket-router.champion").runtime_settings("s3://b/models/cd/", "cd" * 32)

    assert (settings.model_uri, settings.model_digest, settings.port) == ("s3://bucket/models/abc/", "ab" * 32, 8080)
    assert gpu.request_timeout_seconds == 120 and gpu.workers == 1
    assert served.environment_vars == {"LOG_LEVEL": "info"}
    assert (settings.endpoint, settings.served_model, settings.model_name, settings.model_version) == (
        "fraud-scorer", "champion", "fraud-scorer", "3")
    assert settings.workers == served.capacity.sizing.workers_per_instance
    assert settings.request_timeout_seconds == served.request_timeout_seconds
    assert settings.drain_seconds == served.deregistration_delay_seconds
    assert settings.metric_dimensions == (("Stack", "prod"), ("Endpoint", "fraud-scorer"), ("ServedModel", "champion"))


def test_the_runtime_is_told_the_served_models_queue_budget_or_left_to_its_default() -> None:
    values = prod_values()
    values["endpoints"][0]["servedModels"][0]["queueBudgetSeconds"] = 1.5
    plan = plan_of(values)

    budget = served_plan(plan, "fraud-scorer.champion").runtime_settings("s3://b/models/abc/", "ab" * 32)
    default = served_plan(plan, "ticket-router.champion").runtime_settings("s3://b/models/cd/", "cd" * 32)

    assert (budget.queue_budget_seconds, budget.admission_budget_seconds) == (1.5, 1.5)
    # Unset: the runtime's default, 1 s (half ticket-router's 120 s timeout would be 60 s).
    assert (default.queue_budget_seconds, default.admission_budget_seconds) == (None, 1.0)


def test_batching_is_off_on_cpu_and_on_for_gpu_unless_the_served_model_says_otherwise() -> None:
    plan = plan_of(prod_values())
    values = prod_values()
    values["endpoints"][0]["servedModels"][0].update(maxBatchSize=4, maxBatchDelayMs=3)
    values["endpoints"][1]["servedModels"][0]["maxBatchSize"] = 1

    def batching(plan: StackPlan, name: str) -> tuple[int, int]:
        settings = served_plan(plan, name).runtime_settings("s3://b/models/abc/", "ab" * 32)
        return settings.max_batch_size, settings.max_batch_delay_ms

    assert batching(plan, "fraud-scorer.champion") == (1, 0)  # CPU: off
    assert batching(plan, "ticket-router.champion") == (DEFAULT_GPU_BATCH_SIZE, 0)  # GPU
    assert batching(plan_of(values), "fraud-scorer.champion") == (4, 3)
    assert batching(plan_of(values), "ticket-router.champion") == (1, 0)


def test_without_the_high_resolution_metric_the_runtime_publishes_nothing_and_names_no_registry() -> None:
    values = prod_values()
    values["endpoints"][0]["servedModels"][0]["scaling"] = {"highResolutionMetric": False}

    settings = served_plan(plan_of(values), "fraud-scorer.champion").runtime_settings("s3://b/models/abc/", "ab" * 32)

    assert settings.metric_dimensions == () and settings.model_name is None and settings.model_version is None


def test_served_model_plan_keeps_the_model_uri_and_compute_profile() -> None:
    plan = plan_of(prod_values())
    champion = served_plan(plan, "fraud-scorer.champion")
    gpu = served_plan(plan, "ticket-router.champion")

    assert champion.model_uri == "models:/fraud-scorer@champion"
    assert champion.profile.compute_type.value == "CPU_MEDIUM"
    assert gpu.model_uri == "models:/ticket-router@champion"
    assert gpu.profile.compute_type.value == "GPU_MEDIUM"


def test_scale_to_zero_is_carried_to_the_served_model_plan() -> None:
    values = prod_values()
    values["endpoints"][0]["servedModels"][1]["scaleToZeroEnabled"] = True

    plan = plan_of(values)

    challenger, champion = served_plan(plan, "fraud-scorer.challenger"), served_plan(plan, "fraud-scorer.champion")
    assert (challenger.scale_to_zero, challenger.scaling.scale_to_zero) == (True, True)
    assert (champion.scale_to_zero, champion.scaling.scale_to_zero) == (False, False)


def test_expected_peak_concurrency_is_stated_only_with_expected_traffic() -> None:
    plan = plan_of(prod_values())

    # 200 QPS × 0.040 s = 8; the GPU endpoint states a latency but no QPS.
    assert [s.expected_peak_concurrency for s in plan.served_models] == [8, None, None]


# --- timeouts and health checks -------------------------------------------------------------------

@pytest.mark.parametrize(("timeout", "delay"), [(3599, 3599), (3600, 3600), (3601, 3600), (1, 1)])
def test_deregistration_delay_follows_the_request_timeout_up_to_the_alb_limit(timeout: int, delay: int) -> None:
    values = prod_values()
    values["endpoints"][0]["requestTimeoutSeconds"] = timeout

    plan = plan_of(values)

    assert served_plan(plan, "fraud-scorer.champion").deregistration_delay_seconds == delay


def test_gpu_served_models_get_longer_to_become_healthy() -> None:
    plan = plan_of(prod_values())

    # CPU: boot + image pull + fetch 120 s, load 180 s; GPU (CUDA images, large models) 300 + 1800 s.
    assert [s.health_check_grace_seconds for s in plan.served_models] == [300, 300, 2100]
    # The launch hook allows the same before it abandons an instance; the warm-up, counted from
    # InService (after the hook), is the health checks plus one in-flight period for both.
    assert [s.scaling.launch_hook_timeout_seconds for s in plan.served_models] == [300, 300, 2100]
    assert [s.scaling.instance_warmup_seconds for s in plan.served_models] == [30, 30, 30]


@pytest.mark.parametrize(("compute_type", "model_gib", "expected"), [
    ("CPU_MEDIUM", 1.0, (0, False, False)),
    ("GPU_SMALL", 1.0, (1, False, True)),
    ("MULTIGPU_MEDIUM", 10.5, (4, False, True)),  # fits one A10G: CUDA_VISIBLE_DEVICES per worker over 4 GPUs
    ("MULTIGPU_MEDIUM", 40.5, (0, True, True)),  # does not: one worker with the model across all of them
])
def test_the_runtime_is_told_how_to_use_the_gpus_and_to_require_one(compute_type: str, model_gib: float,
                                                                     expected: tuple[int, bool, bool]) -> None:
    values = prod_values()
    values["endpoints"][0]["servedModels"][0]["computeType"] = compute_type
    plan = plan_stack("prod", parse_stack_config(values, "stacks/Pulumi.prod.yaml"), {"fraud-scorer.champion": model_gib})

    settings = served_plan(plan, "fraud-scorer.champion").runtime_settings("s3://bucket/models/abc/", "ab" * 32)

    assert (settings.gpus, settings.spread_across_gpus, settings.require_gpu) == expected


@pytest.mark.parametrize("compute_type", list(ComputeType))
def test_the_runtime_stops_loading_before_the_health_check_grace_ends(compute_type: ComputeType) -> None:
    """A runtime still allowed to load when the grace ends is replaced mid-load (issue 18: 900 s
    of GPU grace against 1800 s of load timeout): the grace is the start plus the whole load."""
    values = prod_values()
    values["endpoints"][0]["servedModels"][0]["computeType"] = compute_type.value
    served = served_plan(plan_of(values), "fraud-scorer.champion")

    settings = served.runtime_settings("s3://bucket/models/abc/", "ab" * 32)

    start = GPU_START_SECONDS if served.profile.has_gpu else CPU_START_SECONDS
    assert settings.load_timeout_seconds + start == served.health_check_grace_seconds


# --- the gateway ------------------------------------------------------------------------------------

def test_internal_gateway_uses_the_private_subnets_and_https_with_a_certificate() -> None:
    plan = plan_of(prod_values())

    gateway = plan.gateway
    assert (gateway.load_balancer_name, gateway.internal, gateway.subnet_ids) == ("kiln-prod", True, PRIVATE)
    assert (gateway.certificate_arn, gateway.listener_port) == (CERTIFICATE, 443)
    assert gateway.ingress_cidrs == ["10.0.0.0/8"]


def test_internet_facing_gateway_uses_the_public_subnets_and_http_without_a_certificate() -> None:
    values = prod_values()
    values["gateway"] = {"internetFacing": True, "allowedCidrs": ["203.0.113.0/24"]}

    gateway = plan_of(values).gateway

    assert (gateway.internal, gateway.subnet_ids) == (False, PUBLIC)
    assert (gateway.certificate_arn, gateway.listener_port) == (None, 80)
    assert gateway.ingress_cidrs == ["203.0.113.0/24"]


def test_gateway_idle_timeout_is_five_seconds_above_the_longest_request_timeout() -> None:
    values = prod_values()
    values["endpoints"][1]["requestTimeoutSeconds"] = 900

    # max(597, 900) + 5
    assert plan_of(values).gateway.idle_timeout_seconds == 905
    # max(597, 120) + 5
    assert plan_of(prod_values()).gateway.idle_timeout_seconds == 602


# --- cost ----------------------------------------------------------------------------------------------

def test_stack_cost_is_the_sum_of_its_served_models() -> None:
    plan = plan_of(prod_values())

    # champion 3-6 × c7i.4xlarge $0.714 = 2.142-4.284; challenger 4 × c7i.2xlarge $0.357 = 1.428;
    # ticket-router 2-8 × g5.xlarge $1.006 = 2.012-8.048. Sum: 5.582-13.76.
    # ticket-router's warm pool: AWS keeps max(1, 8 - desired) stopped, 6 at the minimum and 1 at
    # the maximum, each a 100 GiB gp3 root with 350 MiB/s (225 over the free 125), per AWS's EBS
    # prices $0.08/GB-month and $0.04/MiB/s-month over 730 hours.
    volume = (100 * 0.08 + 225 * 0.04) / 730
    assert plan.hourly_cost_min == pytest.approx(5.582 + 6 * volume, abs=1e-4)
    assert plan.hourly_cost_max == pytest.approx(13.76 + 1 * volume, abs=1e-4)
    [router] = [s for s in plan.served_models if s.endpoint == "ticket-router"]
    assert router.as_properties()["hourlyCostMin"] == pytest.approx(2.012 + 6 * volume, abs=1e-4)
    assert "warm pool 6 stopped at min, 1 at max" in router.warm_pool_arithmetic()
    assert all(s.warm_pool_arithmetic() is None for s in plan.served_models if s is not router)


@pytest.mark.parametrize(("min_size", "stopped"), [(0, (6, 0)), (3, (6, 3)), (7, (7, 7))])
def test_a_warm_pool_is_kept_at_max_minus_desired_never_below_its_min_size(
        min_size: int, stopped: tuple[int, int]) -> None:
    values = prod_values()
    values["endpoints"][1]["servedModels"][0]["scaling"] = {"warmPool": {"minSize": min_size}}

    [router] = [s for s in plan_of(values).served_models if s.endpoint == "ticket-router"]

    assert router.warm_pool_stopped == stopped


def test_the_plan_carries_the_stack_settings_bake_and_the_reports_read() -> None:
    plan = plan_of(prod_values())

    # bake reads the environment, build timeout and tracking URI from the plan, the reports its region
    assert (plan.config.environment, plan.config.build.timeout_minutes, plan.config.region) == ("prod", 60, "us-east-1")
    assert plan.config.mlflow_tracking_uri == "http://mlflow.internal:5000"


def test_every_runtime_keeps_connections_longer_than_the_shared_alb_is_idle() -> None:
    """The ALB's idle timeout follows the stack's longest request timeout; a runtime whose own
    endpoint is quicker must still outlast it, or the ALB reuses closed connections (502)."""
    values = prod_values()
    values["endpoints"][0]["requestTimeoutSeconds"] = 60
    plan = plan_of(values)

    for served in plan.served_models:
        settings = served.runtime_settings("s3://bucket/models/abc/", "ab" * 32)
        assert settings.keep_alive_seconds > plan.gateway.idle_timeout_seconds, served.resource_name


def test_logical_names_keep_short_names_and_cut_long_ones_apart() -> None:
    """Resources are autonamed from the logical name; a long endpoint and served model name
    is cut to 40 characters with a hash of the whole, so two long names never meet."""
    values = prod_values()
    values["endpoints"][0]["name"] = "customer-lifetime-value-forecaster"
    for served in values["endpoints"][0]["servedModels"]:
        served["name"] = f"gradient-boosted-trees-2026-{served['name']}"
    values["endpoints"][0]["trafficConfig"]["routes"] = [
        {**route, "servedModelName": f"gradient-boosted-trees-2026-{route['servedModelName']}"}
        for route in values["endpoints"][0]["trafficConfig"]["routes"]]
    plan = plan_of(values)
    long_names = [s.logical_name for s in plan.endpoints[0].served_models]
    short = plan.endpoints[1].served_models[0]

    assert all(len(name) == 40 and name.startswith("customer-lifetime-value-fo") for name in long_names)
    assert len(set(long_names)) == len(long_names) == 2
    assert short.logical_name == short.resource_name
    assert "." not in short.lambda_safe_name and short.lambda_safe_name == short.resource_name.replace(".", "_")


def test_a_served_model_is_serialized_once_for_its_component_report_and_outputs() -> None:
    """The camelCase the component's inputs, the plan report and the review share (and the
    policy pack reads): every key carries its own plan field."""
    plan = plan_of(prod_values())
    champion, challenger = served_plan(plan, "fraud-scorer.champion"), served_plan(plan, "fraud-scorer.challenger")
    sizing, capacity = champion.capacity.sizing, champion.capacity

    assert champion.as_properties() == {
        "endpoint": "fraud-scorer", "servedModelName": "champion", "modelUri": "models:/fraud-scorer@champion",
        "computeType": "CPU_MEDIUM", "instanceType": sizing.instance.name,
        "workersPerInstance": sizing.workers_per_instance, "minInstances": sizing.min_instances,
        "maxInstances": sizing.max_instances, "minConcurrency": capacity.min_concurrency,
        "maxConcurrency": capacity.max_concurrency, "trafficPercentage": 90, "scaleToZeroEnabled": False,
        "requestTimeoutSeconds": 597, "authRequired": False,
        "targetRequestsPerMinute": capacity.target_requests_per_minute,
        "hourlyCostMin": sizing.hourly_cost_min, "hourlyCostMax": sizing.hourly_cost_max,
        # 200 QPS × 40 ms
        "expectedPeakConcurrency": 8,
    }
    assert "expectedPeakConcurrency" not in challenger.as_properties()
    assert champion.capacity_outputs() == {
        "instanceType": sizing.instance.name, "minInstances": sizing.min_instances, "maxInstances": sizing.max_instances,
    }
    assert (sizing.min_instances, sizing.max_instances) != (0, 0) and sizing.min_instances != sizing.max_instances
