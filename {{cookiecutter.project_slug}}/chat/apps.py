"""The chat app: rooms, their pages and the WebSocket consumer."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    """App registry entry for the chat."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "chat"
