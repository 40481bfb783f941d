"""Every rule of the pack, one module per concern."""

from policies.rules import budget, compute, gateway, network, operate, readiness, scaling, served_models, storage
from policies.rules.rule import Rule

RULES: list[Rule] = [
    *scaling.RULES,
    *gateway.RULES,
    *storage.RULES,
    *compute.RULES,
    *network.RULES,
    *readiness.RULES,
    *served_models.RULES,
    *budget.RULES,
    *operate.RULES,
]
