from django.urls import path

from consent.api import gdpr, views

app_name = "consent-api"

urlpatterns = [
    path(
        "customers/<int:customer_id>/subscriptions/",
        views.CustomerSubscriptions.as_view(),
        name="customer-subscriptions",
    ),
    path(
        "customers/<int:customer_id>/consent-history/",
        views.CustomerConsentHistory.as_view(),
        name="customer-consent-history",
    ),
    path("customers/<int:customer_id>/export/", gdpr.CustomerExport.as_view(), name="export"),
    path("customers/<int:customer_id>/erase/", gdpr.CustomerErase.as_view(), name="erase"),
]
