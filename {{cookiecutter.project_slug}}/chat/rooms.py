"""What a room name may be: the page URL, the WebSocket route and the group name share it.

ASCII only, because Channels group names must be ASCII (a backslash-w pattern would let
Unicode in and crash group_add), and short, because group names are capped at 100 characters.
"""

import hashlib

ROOM_NAME_PATTERN = r"[A-Za-z0-9_-]{1,100}"
ROOM_NAME_RULE = "1-100 characters: letters A-Z, a-z, digits, '-' and '_'"


def group_name(room_name: str) -> str:
    """Return the channel-layer group for a room.

    The room name is hashed so that every valid name, even 100 characters long, fits the
    layer's name limit with the prefix.
    """
    return "chat." + hashlib.sha256(room_name.encode()).hexdigest()[:40]
