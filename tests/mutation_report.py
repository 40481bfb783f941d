"""The per-module table of a mutation run: killed / survived / timeout, against the target.

`make mutation` runs mutmut (configured in pyproject.toml) and then this script, which reads
mutmut's results (`mutants/<module>.py.meta`) and the accepted equivalent mutants listed in
docs/testing.md. A module passes when at least TARGET of its mutants are killed (a timeout
counts as killed: the test run noticed the change); a survivor passes only when it is listed
as equivalent there, with its reason. Exit 1 when a module misses the target or a survivor is
unexplained, so a weakened test shows up as a failing command, not a number nobody reads.

    python -m tests.mutation_report [--results mutants] [--equivalents docs/testing.md] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

TARGET = 0.85

# mutmut's exit-code meanings (mutmut/stats.py, status_by_exit_code).
KILLED_CODES = {1, 3}
TIMEOUT_CODES = {36, -24, 24, 152, 255}
SURVIVED_CODES = {0}
NO_TESTS_CODES = {5, 33}

# A row of the equivalents table in docs/testing.md: | `infra.plan.names.x_short_name__mutmut_6` | reason |
EQUIVALENT_ROW = re.compile(r"^\|\s*`(?P<mutant>[\w.]+__mutmut_\d+)`\s*\|\s*(?P<reason>.+?)\s*\|\s*$")


@dataclass
class ModuleResult:
    module: str
    killed: int = 0
    timeout: int = 0
    survived: int = 0
    no_tests: int = 0
    other: int = 0
    equivalent: int = 0
    unexplained: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.killed + self.timeout + self.survived + self.no_tests + self.other

    @property
    def score(self) -> float:
        return (self.killed + self.timeout) / self.total if self.total else 1.0

    @property
    def passed(self) -> bool:
        return self.score >= TARGET and not self.unexplained


def read_equivalents(path: Path) -> dict[str, str]:
    """Mutant name → why it cannot be killed, from the table in docs/testing.md."""
    if not path.exists():
        return {}
    rows = (EQUIVALENT_ROW.match(line) for line in path.read_text().splitlines())
    return {row["mutant"]: row["reason"] for row in rows if row}


def module_results(results_dir: Path, equivalents: dict[str, str]) -> list[ModuleResult]:
    modules = []
    for meta in sorted(results_dir.rglob("*.py.meta")):
        module = meta.relative_to(results_dir).as_posix().removesuffix(".meta")
        result = ModuleResult(module)
        for mutant, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if code in KILLED_CODES:
                result.killed += 1
            elif code in TIMEOUT_CODES:
                result.timeout += 1
            elif code in SURVIVED_CODES or code in NO_TESTS_CODES:
                if code in SURVIVED_CODES:
                    result.survived += 1
                else:
                    result.no_tests += 1
                if mutant in equivalents:
                    result.equivalent += 1
                else:
                    result.unexplained.append(mutant)
            else:
                result.other += 1
                result.unexplained.append(mutant)
        if result.total:
            modules.append(result)
    return modules


def stale_equivalents(equivalents: dict[str, str], results_dir: Path) -> list[str]:
    """Listed equivalents that no longer survive (killed now, or renumbered by a code change)."""
    surviving = set()
    for meta in results_dir.rglob("*.py.meta"):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        surviving |= {m for m, c in codes.items() if c in SURVIVED_CODES or c in NO_TESTS_CODES}
    return sorted(set(equivalents) - surviving)


def render(modules: list[ModuleResult]) -> str:
    header = f"{'module':<34} {'mutants':>7} {'killed':>6} {'timeout':>7} {'survived':>8} {'no tests':>8} {'equiv.':>6} {'score':>6}  target"
    lines = [header, "-" * len(header)]
    for m in modules:
        verdict = "ok" if m.passed else ("below" if m.score < TARGET else f"{len(m.unexplained)} unexplained")
        lines.append(
            f"{m.module:<34} {m.total:>7} {m.killed:>6} {m.timeout:>7} {m.survived:>8} {m.no_tests:>8} "
            f"{m.equivalent:>6} {m.score:>6.1%}  {verdict}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("mutants"))
    parser.add_argument("--equivalents", type=Path, default=Path("docs/testing.md"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if not args.results.is_dir():
        print(f"error: no mutation results in {args.results}/ (run `make mutation` first)", file=sys.stderr)
        return 2
    equivalents = read_equivalents(args.equivalents)
    modules = module_results(args.results, equivalents)
    stale = stale_equivalents(equivalents, args.results)
    if args.json:
        print(json.dumps({"target": TARGET, "modules": [asdict(m) | {"score": m.score} for m in modules],
                          "staleEquivalents": stale}, indent=2))
    else:
        print(render(modules))
        for m in modules:
            for mutant in m.unexplained:
                print(f"unexplained survivor: {mutant}  (mutmut show {mutant})")
        for mutant in stale:
            print(f"listed as equivalent but not surviving: {mutant} (remove it from {args.equivalents})")
    return 0 if modules and all(m.passed for m in modules) else 1


if __name__ == "__main__":
    sys.exit(main())
