"""The ``Store`` contract for API tokens: create, list, revoke, verify, and
the cheap mark that tells the server when the tokens table changed."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection

from banyan.tokens import Caller, Role
from server.stores.contract.values import TokenInfo


class TokenStore(ABC):
    """API tokens (only their hashes are kept)."""

    @abstractmethod
    async def create_token(self, name: str, role: Role) -> str:
        """A new token for ``name`` (only its hash is kept); ``Conflict`` if
        the name is taken."""

    @abstractmethod
    async def list_tokens(self) -> list[TokenInfo]:
        """Every token's name, role and dates (never the secret)."""

    @abstractmethod
    async def revoke_token(self, name: str) -> None:
        """Revoke the token; ``NotFound`` for an unknown name."""

    @abstractmethod
    async def verify_token(self, token: str) -> Caller | None:
        """The caller a live token stands for, or None."""

    @abstractmethod
    async def token_mark(self) -> tuple[float, ...]:
        """A cheap summary of the tokens table that changes whenever a token
        is added, revoked or deleted (by any process: ``banyan-server token
        revoke`` writes the database directly)."""

    @abstractmethod
    async def live_token_names(self, names: Collection[str]) -> set[str]:
        """Of ``names``, those of tokens that exist and are not revoked."""
