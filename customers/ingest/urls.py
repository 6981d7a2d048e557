from django.urls import path

from customers.ingest import views

app_name = "ingest"
urlpatterns = [
    path("batch", views.batch, name="batch"),
    path("import", views.batch, name="import"),
    path("track", views.track, name="track"),
    path("identify", views.identify, name="identify"),
    path("group", views.group, name="group"),
    path("alias", views.alias, name="alias"),
    path("page", views.page, name="page"),
    path("p", views.page, name="page-short"),
    path("screen", views.screen, name="screen"),
]
