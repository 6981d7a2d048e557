from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"

    def ready(self) -> None:
        from journeys import receivers
        from milestones import signals

        signals.outcomes_recorded.connect(receivers.on_outcomes_recorded, dispatch_uid="journeys")
