"""Short, stable AWS names.

Load balancer and target group names are limited to 32 characters (letters, digits and
'-'). Kiln names them from the stack, endpoint and served model, and when that is too long
keeps a readable prefix and appends a hash of the full name, so two long names never
collide the way plain truncation would.
"""

from __future__ import annotations

import hashlib

AWS_LB_NAME_LIMIT = 32
HASH_LENGTH = 7


def digest(text: str, length: int = HASH_LENGTH) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def short_name(parts: list[str], limit: int = AWS_LB_NAME_LIMIT, salt: str = "") -> str:
    """Join parts with '-'; over the limit (or with a salt), end in a hash of everything.

    `salt` carries properties whose change forces AWS to replace the resource (a target
    group's VPC or port), so the replacement gets a new name and can be created before the
    old one is deleted.
    """
    full = "-".join(parts)
    if len(full) <= limit and not salt:
        return full
    suffix = digest(f"{full}|{salt}")
    budget = limit - len(suffix) - len(parts)  # one '-' after each part
    kept = [part[:width].rstrip("-") for part, width in zip(parts, _fair_widths([len(p) for p in parts], budget))]
    return "-".join([*(part for part in kept if part), suffix])


def _fair_widths(lengths: list[int], budget: int) -> list[int]:
    """Share `budget` characters so short parts stay whole and long parts are cut evenly:
    `kiln-prod-customer-lifeti-gradient-boo-1a2b3c4` keeps a bit of every part readable."""
    widths = [0] * len(lengths)
    remaining = sorted(range(len(lengths)), key=lambda i: lengths[i])
    while remaining:
        share = budget // len(remaining)
        index = remaining.pop(0)
        widths[index] = min(lengths[index], share)
        budget -= widths[index]
    return widths


def listener_rule_priorities(endpoint_names: list[str]) -> dict[str, int]:
    """A priority per endpoint that does not move when other endpoints are added or removed.

    ALB rule priorities must be unique per listener (1-50000). Endpoint paths never
    overlap, so order does not matter; stability does, since a changed priority is an
    update the engine has to sequence around the other rules.
    """
    priorities: dict[str, int] = {}
    taken: set[int] = set()
    for name in sorted(endpoint_names):
        priority = int(digest(name, 8), 16) % 49_999 + 1
        while priority in taken:
            priority = priority % 49_999 + 1
        taken.add(priority)
        priorities[name] = priority
    return priorities
