"""The pack's entry point (`pulumi preview --policy-pack policies`, or `kiln check`).

The engine runs this file with cwd = policies/; the project root goes on sys.path so the
rules import as `policies.rules` (and read infra/catalog.py) exactly as the tests do.
Nothing here may print: the engine reads the gRPC port from the first stdout line.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack

from policies.pack import PACK_NAME, policies_for, stack_environment
from policies.rules import RULES

PolicyPack(name=PACK_NAME, policies=policies_for(RULES, stack_environment()))
