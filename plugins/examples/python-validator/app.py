"""A DMS validator written in Python: required metadata keys and denied words.

Binding configuration (read with the `host` import `config(key)`):
- `required-metadata`: comma-separated metadata keys every message must carry;
- `deny-words`: comma-separated words the content (UTF-8, case-insensitive) may not contain.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import Message, Rejection


def _setting(key: str) -> list[str]:
    """The comma-separated configuration value `key`, trimmed, without empty items."""
    return [item.strip() for item in (host.config(key) or "").split(",") if item.strip()]


def _check(message: Message) -> Rejection | None:
    present = {key for key, _ in message.metadata}
    for key in _setting("required-metadata"):
        if key not in present:
            return Rejection("missing_metadata", f"the metadata key {key!r} is required")
    content = message.content.decode("utf-8", errors="replace").casefold()
    for word in _setting("deny-words"):
        if word.casefold() in content:
            return Rejection("denied_word", f"the content contains the denied word {word!r}")
    return None


class WitWorld(wit_world.WitWorld):
    def validate(self, message: Message) -> None:
        rejection = _check(message)
        outcome = "accepted" if rejection is None else f"rejected ({rejection.code})"
        host.log(host.Level.INFO, f"python-validator: {message.id} {outcome}")
        if rejection is not None:
            raise Err(rejection)
