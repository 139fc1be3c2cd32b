"""What a token's name may be (every store checks it before creating one)."""

from __future__ import annotations

from banyan.errors import InvalidInput

NAME_MAX = 128


def check_name(name: str) -> None:
    if not name or len(name) > NAME_MAX or not name.isprintable():
        raise InvalidInput(
            f"a token name is 1 to {NAME_MAX} printable characters", issues={"name": name}
        )
