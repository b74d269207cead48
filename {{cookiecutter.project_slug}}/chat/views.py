"""Pages of the chat. uWSGI serves them; the room page's script then opens the WebSocket."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from chat.consumers import MAX_MESSAGE_CHARS
from chat.rooms import ROOM_NAME_PATTERN, ROOM_NAME_RULE


def index(request: HttpRequest) -> HttpResponse:
    """Show the form that picks a room."""
    return render(
        request,
        "chat/index.html",
        {"room_name_pattern": ROOM_NAME_PATTERN, "room_name_rule": ROOM_NAME_RULE},
    )


def room(request: HttpRequest, room_name: str) -> HttpResponse:
    """Show one room; the URL pattern has already refused bad names with a 404."""
    return render(
        request,
        "chat/room.html",
        {"room_name": room_name, "max_message_chars": MAX_MESSAGE_CHARS},
    )
