from django.apps import AppConfig


class JourneysConfig(AppConfig):
    # Filled by its own issue (see DESIGN.md §3); registered now so migrations and
    # queue routing have a stable home.
    name = "journeys"
