"""The pack's entry point (`pulumi preview --policy-pack policies`, or `kiln check`).

The engine runs this file with cwd = policies/ in the pack's virtualenv, which is the
project's own (PulumiPolicy.yaml), where Kiln is installed: the rules import as
`policies.rules` and read the compute catalog (infra.plan.catalog) exactly as the tests do.
Nothing here may print: the engine reads the gRPC port from the first stdout line.
"""

from pulumi_policy import PolicyPack

from policies.pack import PACK_NAME, policies_for, stack_environment
from policies.rules import RULES

PolicyPack(name=PACK_NAME, policies=policies_for(RULES, stack_environment()))
