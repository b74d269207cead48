"""Page URLs of the chat: the room picker and a room."""

from django.urls import re_path

from chat import views
from chat.rooms import ROOM_NAME_PATTERN

app_name = "chat"

urlpatterns = [
    re_path(r"^$", views.index, name="index"),
    re_path(rf"^(?P<room_name>{ROOM_NAME_PATTERN})/$", views.room, name="room"),
]
