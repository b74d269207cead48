"""The chat pages render, and a bad room name is a 404."""

import pytest
from django.test import Client


@pytest.fixture
def client() -> Client:
    """A test client for the pages."""
    return Client()


def test_index_offers_a_room_form(client: Client) -> None:
    """The index page holds the room picker and its script."""
    response = client.get("/chat/")
    assert response.status_code == 200
    assert b'id="room-form"' in response.content
    assert b"chat/index.js" in response.content


def test_root_redirects_to_the_index(client: Client) -> None:
    """/ sends visitors to the room picker."""
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/chat/"


def test_room_page_carries_the_room_name_as_data(client: Client) -> None:
    """The room page passes its name to the script through json_script, not inline code."""
    response = client.get("/chat/lobby-1_a/")
    assert response.status_code == 200
    data = b'<script id="room-name" type="application/json">"lobby-1_a"</script>'
    assert data in response.content
    assert b"chat/room.js" in response.content


@pytest.mark.parametrize("path", ["/chat/a%20b/", "/chat/caf%C3%A9/", "/chat/" + "x" * 101 + "/"])
def test_bad_room_names_are_not_found(client: Client, path: str) -> None:
    """Spaces, non-ASCII letters and names over 100 characters have no page."""
    assert client.get(path).status_code == 404
