"""AWS names: within limits, stable between runs, distinct where plain truncation would collide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from infra.plan.names import digest, listener_rule_priorities, short_name

PROJECT_ROOT = Path(__file__).resolve().parents[3]


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


# --- exact names: a changed name is a replaced load balancer or target group -------------------

def test_a_name_of_exactly_32_characters_is_kept_as_written() -> None:
    parts = ["kiln", "a" * 27]  # 4 + 1 + 27 = 32

    assert short_name(parts) == "kiln-" + "a" * 27


def test_a_name_of_33_characters_is_cut_to_32_with_a_hash_of_the_whole() -> None:
    # printf 'kiln-aaaaaaaaaaaaaaaaaaaaaaaaaaaa|' | sha256sum → 744cd04…
    # budget 32 - 7 - 2 = 23: kiln keeps 4, the long part gets the other 19.
    name = short_name(["kiln", "a" * 28])

    assert name == "kiln-" + "a" * 19 + "-744cd04"
    assert len(name) == 32


def test_long_names_share_the_budget_fairly_between_parts() -> None:
    # printf 'kiln-dev-customer-lifetime-value-forecaster-gradient-boosted-trees-2026-q3|' | sha256sum → 5379be9…
    # budget 32 - 7 - 4 = 21, shortest part first: dev 3 (share 5), kiln 4 (share 6),
    # gradient… min(30, 14 // 2 = 7), customer… min(34, 7 // 1 = 7).
    name = short_name(["kiln", "dev", "customer-lifetime-value-forecaster", "gradient-boosted-trees-2026-q3"])

    assert name == "kiln-dev-custome-gradien-5379be9"


def test_a_part_cut_at_a_dash_does_not_leave_a_double_dash() -> None:
    # printf 'fraud-scorer-xxxxxxxxxxxxxxxxxxxx|' | sha256sum → 9f490ba…
    # budget 22 - 7 - 2 = 13: fraud-scorer gets 13 // 2 = 6 → "fraud-" → "fraud"; the x's get 7.
    assert short_name(["fraud-scorer", "x" * 20], limit=22) == "fraud-xxxxxxx-9f490ba"


def test_a_part_cut_to_nothing_is_left_out() -> None:
    # printf 'aaaaaaaaaa-bbbbbbbbbb|' | sha256sum → 5128a84…
    # budget 10 - 7 - 2 = 1: the first part gets 1 // 2 = 0 characters, the second 1.
    assert short_name(["a" * 10, "b" * 10], limit=10) == "b-5128a84"


def test_a_salt_hashes_even_a_short_name() -> None:
    # printf 'kiln-prod|vpc-1:8080' | sha256sum → f0ac8a0…
    assert short_name(["kiln", "prod"], salt="vpc-1:8080") == "kiln-prod-f0ac8a0"
    assert short_name(["kiln", "prod"], salt="") == "kiln-prod"


def test_digest_is_the_start_of_the_sha256_hex() -> None:
    # printf abc | sha256sum → ba7816bf8f01cfea…
    assert digest("abc") == "ba7816b"
    assert digest("abc", 12) == "ba7816bf8f01"


# --- listener rule priorities ------------------------------------------------------------------

def test_listener_priority_is_the_name_hash_modulo_the_alb_range() -> None:
    # printf fraud-scorer | sha256sum → 14a866f7…; 0x14a866f7 = 346580727; 346580727 % 49999 + 1 = 37659
    # printf ticket-router | sha256sum → c8921623…; 0xc8921623 = 3365017123; 3365017123 % 49999 + 1 = 34425
    assert listener_rule_priorities(["ticket-router", "fraud-scorer"]) == {"fraud-scorer": 37659, "ticket-router": 34425}


def test_colliding_priorities_go_to_the_next_free_one_in_name_order() -> None:
    # printf e294 | sha256sum → 5c231c93… (1545804947); printf e380 | sha256sum → 633c65a5… (1664902565);
    # both % 49999 + 1 = 35864. Sorted, e294 comes first and keeps it; e380 moves to 35865.
    expected = {"e294": 35864, "e380": 35865}

    assert listener_rule_priorities(["e294", "e380"]) == expected
    assert listener_rule_priorities(["e380", "e294"]) == expected


def test_a_collision_at_the_highest_priority_wraps_to_one() -> None:
    # printf w25760 | sha256sum → cf425375… (3477230453); printf w6312 | sha256sum → 48b8e04d… (1220075597);
    # both % 49999 + 1 = 49999, the last of 1-50000 this scheme uses. "w25760" sorts first.
    assert listener_rule_priorities(["w6312", "w25760"]) == {"w25760": 49999, "w6312": 1}


def test_no_endpoints_need_no_priorities() -> None:
    assert listener_rule_priorities([]) == {}


# --- stability across processes: Python's own hash() is salted per process ---------------------

NAMES_IN_A_FRESH_PROCESS = """
import json
from infra.plan.names import listener_rule_priorities, short_name
print(json.dumps({
    "target_group": short_name(["kiln", "prod", "fraud-scorer", "champion"], salt="vpc-0abc:8080"),
    "long": short_name(["kiln", "dev", "customer-lifetime-value-forecaster", "gradient-boosted-trees-2026-q3"]),
    "priorities": listener_rule_priorities(["fraud-scorer", "ticket-router", "e294", "e380"]),
}))
"""


def test_names_and_priorities_are_the_same_in_another_process_with_another_hash_seed() -> None:
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(PROJECT_ROOT)}

    result = subprocess.run(
        [sys.executable, "-c", NAMES_IN_A_FRESH_PROCESS], env=env, cwd=PROJECT_ROOT,
        capture_output=True, text=True, timeout=60, check=True,
    )

    assert json.loads(result.stdout) == {
        "target_group": short_name(["kiln", "prod", "fraud-scorer", "champion"], salt="vpc-0abc:8080"),
        "long": short_name(["kiln", "dev", "customer-lifetime-value-forecaster", "gradient-boosted-trees-2026-q3"]),
        "priorities": listener_rule_priorities(["fraud-scorer", "ticket-router", "e294", "e380"]),
    }
