from django.urls import path
from rest_framework.routers import SimpleRouter

from journeys.api import views

app_name = "journeys-api"

router = SimpleRouter()
router.register("journeys", views.JourneyViewSet, basename="journey")

urlpatterns = [
    path(
        "customers/<int:customer_id>/enrollments/",
        views.CustomerEnrollmentList.as_view(),
        name="customer-enrollments",
    ),
    *router.urls,
]
