"""JSON merge patch (RFC 7386), as ``kubectl patch --type merge`` applies it.

One implementation for everything in mesh that merges a patch into an object: the replay API
server's PATCH, the trace builder's ``modify`` steps, and the installer's overlays.
"""

from __future__ import annotations

import copy


def merge_patch(target, patch):
    """Maps merge key by key, ``null`` deletes a key, anything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
