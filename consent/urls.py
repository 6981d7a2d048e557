"""The login-free consent pages; the paths are the ones ``consent.links`` signs links for."""

from django.urls import path

from consent import views

app_name = "consent"

urlpatterns = [
    path("u/<str:token>", views.unsubscribe, name="unsubscribe"),
    path("p/<str:token>", views.preferences, name="preferences"),
    path("confirm/<str:token>", views.confirm, name="confirm"),
]
