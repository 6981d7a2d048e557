from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    path("", include("ops.urls")),  # /healthz, /readyz, /metrics
    path("admin/", admin.site.urls),
    path("v1/", include("customers.ingest.urls")),
    path("m/", include("messaging.urls")),
    path("api/v1/", include("customers.api.urls")),
    path("api/v1/", include("milestones.api.urls")),
    path("api/v1/", include("consent.api.urls")),
    path("api/v1/", include("messaging.api.urls")),
    path("api/v1/", include("journeys.api.urls")),
    path("c/", include("consent.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]
