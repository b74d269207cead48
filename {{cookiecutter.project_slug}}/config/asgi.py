"""ASGI entry point: Daphne serves the WebSockets under /ws/ through this module."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Set Django up before anything imports models (consumers, auth middleware),
# the order Channels documents.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chat.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # nginx sends pages to uWSGI; Daphne serves HTTP under runserver, and /ws/healthz (nginx's
        # healthcheck) in the stack.
        "http": django_asgi_app,
        # The validator refuses handshakes whose Origin is not in ALLOWED_HOSTS (or is missing).
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
