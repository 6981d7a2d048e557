from django.apps import AppConfig


class AudienceConfig(AppConfig):
    """The customer 360: one page that reads every other app (so it is installed last)."""

    name = "audience"
    verbose_name = "Customer 360"
