"""Include under a prefix of your choice: ``path("zart/", include("django_zart.urls"))``."""

from django.urls import path

from .views import send_event_view

app_name = "django_zart"

urlpatterns = [
    path(
        "executions/<path:execution_id>/events/<str:name>",
        send_event_view,
        name="send-event",
    ),
]
