"""Bearer-token auth for an endpoint (decision 9; docs/security.md).

Only sha256 hashes of tokens are configured. The presented token is hashed and compared
with every configured hash in constant time (hmac.compare_digest, no early exit on the
first match), so response timing does not reveal how close a guess was or which token hit.

On an instance the hashes live in a secret (Secrets Manager or an SSM SecureString) that the
runtime reads at start and again every refresh period, so adding or revoking a token takes
effect on every instance without a rollout (`TokenHashRefresh`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable

log = logging.getLogger("kiln.runtime")

# Open so the ALB health check (which sends no token) can see readiness and liveness.
OPEN_PATHS = frozenset({"/ping", "/health"})


class TokenHashError(ValueError):
    """Configured token hashes that are not sha256 hex digests."""


def token_sha256(token: str) -> str:
    """The value to put in KILN_AUTH_TOKEN_SHA256 (or the token-hash secret) for a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_token_hashes(values: Iterable[str], source: str) -> tuple[str, ...]:
    """Hashes from lines or comma-separated values: trimmed, lower-cased, '#' comments and
    blanks skipped; TokenHashError counts the values that are not sha256 hex digests."""
    hashes = tuple(v.split("#", 1)[0].strip().lower() for v in values)
    hashes = tuple(h for h in hashes if h)
    bad = [h for h in hashes if len(h) != 64 or any(c not in "0123456789abcdef" for c in h)]
    if bad:
        raise TokenHashError(f"{source}: {len(bad)} value(s) are not sha256 hex digests (64 hex characters)")
    return hashes


class BearerAuth:
    """`required` turns auth on even with no hash yet: then every request but the open paths
    gets 401, which is what a new endpoint whose token secret is still empty must do."""

    def __init__(self, token_hashes: tuple[str, ...], required: bool = False) -> None:
        self.required = required
        self._hashes: tuple[bytes, ...] = ()
        self.replace(token_hashes)

    @property
    def enabled(self) -> bool:
        return self.required or bool(self._hashes)

    def replace(self, token_hashes: tuple[str, ...]) -> None:
        """Rotate: from now on exactly these tokens are accepted."""
        self._hashes = tuple(bytes.fromhex(h) for h in token_hashes)

    def allows(self, path: str, authorization: bytes | None) -> bool:
        if not self.enabled or path in OPEN_PATHS:
            return True
        if not authorization:
            return False
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        presented = hashlib.sha256(token.strip().encode()).digest()
        matched = False
        for expected in self._hashes:
            matched |= hmac.compare_digest(presented, expected)
        return matched


class TokenHashRefresh:
    """Re-reads the token-hash secret every `period_seconds` and hands the hashes to `auth`.

    A failed read (throttling, a value with a bad line) keeps the hashes already in force and
    logs why: a runtime never opens up, nor locks everyone out, because of one bad read.
    """

    def __init__(self, auth: BearerAuth, read: Callable[[], str], source: str, period_seconds: float,
                 fixed: tuple[str, ...] = ()) -> None:
        self.auth, self.read, self.source, self.period_seconds = auth, read, source, period_seconds
        # Hashes given in KILN_AUTH_TOKEN_SHA256 itself stay accepted alongside the secret's.
        self.fixed = fixed

    def load(self) -> int:
        """Read once and apply; raises what the read or the parse raises. Returns the count."""
        hashes = self.fixed + parse_token_hashes(self.read().splitlines(), self.source)
        self.auth.replace(hashes)
        return len(hashes)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.period_seconds)
            try:
                count = await asyncio.to_thread(self.load)
            except Exception as error:  # noqa: BLE001 (any failed read keeps the current tokens)
                log.warning("token hashes from %s not refreshed, keeping the current ones: %s", self.source, error)
            else:
                log.debug("token hashes from %s refreshed: %d token(s)", self.source, count)
