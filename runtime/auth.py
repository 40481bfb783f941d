"""Optional bearer-token auth for internet-facing gateways (DESIGN decision 6).

Only sha256 hashes of tokens are configured. The presented token is hashed and compared
with every configured hash in constant time (hmac.compare_digest, no early exit on the
first match), so response timing does not reveal how close a guess was or which token hit.
"""

from __future__ import annotations

import hashlib
import hmac

# Open so the ALB health check (which sends no token) can see readiness and liveness.
OPEN_PATHS = frozenset({"/ping", "/health"})


def token_sha256(token: str) -> str:
    """The value to put in KILN_AUTH_TOKEN_SHA256 for a token."""
    return hashlib.sha256(token.encode()).hexdigest()


class BearerAuth:
    def __init__(self, token_hashes: tuple[str, ...]) -> None:
        self._hashes = tuple(bytes.fromhex(h) for h in token_hashes)

    @property
    def enabled(self) -> bool:
        return bool(self._hashes)

    def allows(self, path: str, authorization: bytes | None) -> bool:
        if not self._hashes or path in OPEN_PATHS:
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
