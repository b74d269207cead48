"""URL configuration: the chat app at /chat/, the admin at /admin/, health checks."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.generic import RedirectView


def health(request: HttpRequest) -> HttpResponse:
    """200 from whichever server runs Django, touching nothing else (no database, no Redis).

    nginx's container healthcheck asks /healthz (nginx sends it to uWSGI) and /ws/healthz (nginx
    sends everything under /ws/ to Daphne, which serves plain HTTP through Django too).
    """
    return HttpResponse("ok\n", content_type="text/plain")


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="chat:index", permanent=False)),
    path("chat/", include("chat.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health),
    path("ws/healthz", health),
]
