"""WebSocket routes; config/asgi.py mounts them. nginx sends every /ws/ path to Daphne."""

from django.urls import re_path

from chat.consumers import ChatConsumer, RejectConsumer
from chat.rooms import ROOM_NAME_PATTERN

websocket_urlpatterns = [
    re_path(rf"^ws/chat/(?P<room_name>{ROOM_NAME_PATTERN})/$", ChatConsumer.as_asgi()),
    # Anything else under ws/ (a bad room name, a typo) gets an error frame, not a traceback.
    re_path(r"^ws/", RejectConsumer.as_asgi()),
]
