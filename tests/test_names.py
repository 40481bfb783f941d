"""AWS names: within limits, stable between runs, distinct where plain truncation would collide."""

from __future__ import annotations

from infra.names import listener_rule_priorities, short_name


def test_short_names_are_kept_as_written() -> None:
    assert short_name(["kiln", "prod"]) == "kiln-prod"


def test_long_names_fit_32_characters_and_keep_every_part_readable() -> None:
    name = short_name(["kiln", "dev", "customer-lifetime-value-forecaster", "gradient-boosted-trees-2026-q3"])

    assert len(name) <= 32
    assert name.startswith("kiln-dev-custom")
    assert "-gradien" in name


def test_names_that_truncate_alike_stay_distinct() -> None:
    q3 = short_name(["kiln", "dev", "customer-lifetime-value-forecaster", "gradient-boosted-trees-2026-q3"])
    q4 = short_name(["kiln", "dev", "customer-lifetime-value-forecaster", "gradient-boosted-trees-2026-q4"])

    assert q3 != q4
    assert q3[:-7] == q4[:-7]


def test_names_are_stable_between_runs() -> None:
    parts = ["kiln", "prod", "fraud-scorer", "champion"]

    assert short_name(parts, salt="vpc-1:8080") == short_name(list(parts), salt="vpc-1:8080")


def test_replacement_properties_change_the_name() -> None:
    parts = ["kiln", "prod", "fraud-scorer", "champion"]

    assert short_name(parts, salt="vpc-1:8080") != short_name(parts, salt="vpc-2:8080")


def test_listener_priorities_are_unique_and_do_not_move_when_endpoints_are_added() -> None:
    before = listener_rule_priorities(["fraud-scorer", "ticket-router"])
    after = listener_rule_priorities(["fraud-scorer", "ticket-router", "churn"] + [f"e{i}" for i in range(200)])

    assert len(set(after.values())) == len(after)
    assert all(1 <= p <= 50_000 for p in after.values())
    assert {name: after[name] for name in before} == before
