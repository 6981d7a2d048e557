from django.urls import path

from messaging.api import views

app_name = "messaging-api"

urlpatterns = [
    path(
        "customers/<int:customer_id>/inbox/", views.CustomerInbox.as_view(), name="customer-inbox"
    ),
    path(
        "customers/<int:customer_id>/inbox/<int:message_id>/read/",
        views.InboxRead.as_view(),
        name="customer-inbox-read",
    ),
    path(
        "customers/<int:customer_id>/inbox/<int:message_id>/dismiss/",
        views.InboxDismiss.as_view(),
        name="customer-inbox-dismiss",
    ),
    path(
        "customers/<int:customer_id>/messages/",
        views.CustomerMessages.as_view(),
        name="customer-messages",
    ),
]
