from django.urls import path
from rest_framework.routers import SimpleRouter

from milestones.api import views

app_name = "milestones-api"

router = SimpleRouter()
router.register("milestones", views.MilestoneDefinitionViewSet, basename="milestone")

urlpatterns = [
    path(
        "milestones/<slug:key>/dry-run/",
        views.MilestoneDryRun.as_view(),
        name="milestone-dry-run",
    ),
    path(
        "customers/<int:customer_id>/milestones/",
        views.CustomerProgressList.as_view(),
        name="customer-milestones",
    ),
    path(
        "accounts/<int:account_id>/milestones/",
        views.AccountProgressList.as_view(),
        name="account-milestones",
    ),
    path("milestone-outcomes/", views.OutcomeFeed.as_view(), name="milestone-outcomes"),
    *router.urls,
]
