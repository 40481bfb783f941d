"""`make mutation`'s table: a module passes on its kill rate and explained survivors only."""

from __future__ import annotations

import json
from pathlib import Path

from tests.mutation_report import main, module_results, read_equivalents


def write_results(root: Path, module: str, codes: dict[str, int | None]) -> None:
    meta = root / f"{module}.meta"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes, "durations_by_key": {}}))


def mutants(prefix: str, killed: int = 0, survived: int = 0, timeout: int = 0, start: int = 1) -> dict[str, int]:
    codes = [1] * killed + [0] * survived + [36] * timeout
    return {f"{prefix}__mutmut_{start + i}": code for i, code in enumerate(codes)}


def test_a_module_at_exactly_85_percent_passes_and_one_below_fails(tmp_path: Path) -> None:
    write_results(tmp_path, "infra/plan/names.py", mutants("infra.plan.names.x_short_name", killed=17, survived=3))
    write_results(tmp_path, "infra/plan/capacity.py", mutants("infra.plan.capacity.x_plan", killed=16, survived=4))
    equivalents = {f"infra.plan.names.x_short_name__mutmut_{n}": "r" for n in (18, 19, 20)} | {
        f"infra.plan.capacity.x_plan__mutmut_{n}": "r" for n in (17, 18, 19, 20)
    }

    results = {m.module: m for m in module_results(tmp_path, equivalents)}

    assert results["infra/plan/names.py"].score == 0.85 and results["infra/plan/names.py"].passed
    assert results["infra/plan/capacity.py"].score == 0.8 and not results["infra/plan/capacity.py"].passed


def test_timeouts_count_as_killed(tmp_path: Path) -> None:
    write_results(tmp_path, "infra/plan/names.py", mutants("infra.plan.names.x_short_name", killed=5, timeout=5))

    [result] = module_results(tmp_path, {})

    assert (result.killed, result.timeout, result.score, result.passed) == (5, 5, 1.0, True)


def test_an_unexplained_survivor_fails_the_module_whatever_its_score(tmp_path: Path) -> None:
    write_results(tmp_path, "infra/plan/names.py", mutants("infra.plan.names.x_short_name", killed=99, survived=1))

    [result] = module_results(tmp_path, {})

    assert result.unexplained == ["infra.plan.names.x_short_name__mutmut_100"]
    assert not result.passed


def test_mutants_without_tests_need_an_explanation_too(tmp_path: Path) -> None:
    write_results(tmp_path, "infra/plan/names.py", {"infra.plan.names.x_digest__mutmut_1": 33, "infra.plan.names.x_digest__mutmut_2": 1})

    [result] = module_results(tmp_path, {})

    assert (result.no_tests, result.unexplained) == (1, ["infra.plan.names.x_digest__mutmut_1"])


def test_equivalents_are_read_from_the_docs_table(tmp_path: Path) -> None:
    doc = tmp_path / "testing.md"
    doc.write_text(
        "| mutant | why it is equivalent |\n| --- | --- |\n"
        "| `infra.plan.names.x_short_name__mutmut_6` | `rstrip('-')` on a part that never ends in '-' |\n"
        "| `infra.activator.handler.xǁSettingsǁfrom_environment__mutmut_3` | default equals the parsed value |\n"
        "not a row: `infra.plan.names.x_digest__mutmut_1`\n"
    )

    assert read_equivalents(doc) == {
        "infra.plan.names.x_short_name__mutmut_6": "`rstrip('-')` on a part that never ends in '-'",
        "infra.activator.handler.xǁSettingsǁfrom_environment__mutmut_3": "default equals the parsed value",
    }


def test_the_command_exits_1_below_target_0_at_target_and_2_without_results(tmp_path: Path, capsys) -> None:
    docs = tmp_path / "testing.md"
    docs.write_text("| `infra.plan.names.x_short_name__mutmut_10` | equivalent |\n")
    results = tmp_path / "mutants"
    write_results(results, "infra/plan/names.py", mutants("infra.plan.names.x_short_name", killed=9, survived=1))

    assert main(["--results", str(results), "--equivalents", str(docs)]) == 0
    docs.write_text("")
    assert main(["--results", str(results), "--equivalents", str(docs)]) == 1
    assert "unexplained survivor: infra.plan.names.x_short_name__mutmut_10" in capsys.readouterr().out
    assert main(["--results", str(tmp_path / "missing"), "--equivalents", str(docs)]) == 2


def test_an_equivalent_that_no_longer_survives_is_reported_as_stale(tmp_path: Path, capsys) -> None:
    docs = tmp_path / "testing.md"
    docs.write_text("| `infra.plan.names.x_short_name__mutmut_1` | was equivalent |\n")
    results = tmp_path / "mutants"
    write_results(results, "infra/plan/names.py", mutants("infra.plan.names.x_short_name", killed=2))

    main(["--results", str(results), "--equivalents", str(docs)])

    assert "listed as equivalent but not surviving: infra.plan.names.x_short_name__mutmut_1" in capsys.readouterr().out
