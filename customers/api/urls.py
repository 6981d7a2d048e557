from django.urls import path
from rest_framework.routers import SimpleRouter

from customers.api import views

app_name = "api"

router = SimpleRouter()
router.register("customers", views.CustomerViewSet, basename="customer")
router.register("accounts", views.AccountViewSet, basename="account")

urlpatterns = [
    path(
        "customers/<int:customer_id>/events/",
        views.CustomerEventList.as_view(),
        name="customer-events",
    ),
    *router.urls,
]
