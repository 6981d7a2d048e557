from django.urls import path

from messaging import views

app_name = "messaging"

urlpatterns = [
    path("c/<str:token>", views.click, name="click"),
    path("o/<str:token>.gif", views.open_pixel, name="open"),
    path("webhooks/email", views.email_webhook, name="email-webhook"),
    path("webhooks/sms/status", views.sms_status_webhook, name="sms-status-webhook"),
    path("webhooks/sms/inbound", views.sms_inbound_webhook, name="sms-inbound-webhook"),
]
