"""Clip client-supplied text before it reaches a log line or an error message.

Go: none (istiod logs what it gets). A proxy or webhook client chooses type URLs, nonces, NACK
details and field values; logging a megabyte-long one in full would let one client fill the log.
"""

from __future__ import annotations

LOG_FIELD_LIMIT = 200  # characters kept of any one client-supplied field


def clip(value: object, limit: int = LOG_FIELD_LIMIT) -> str:
    """``value`` as text, at most ``limit`` characters plus a note of how much was cut."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"
