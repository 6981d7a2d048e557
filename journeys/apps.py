from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"

    def ready(self) -> None:
        from customers import signals as customer_signals
        from journeys import receivers
        from milestones import signals

        signals.outcomes_recorded.connect(receivers.on_outcomes_recorded, dispatch_uid="journeys")
        signals.stage_changed.connect(receivers.on_stage_changed, dispatch_uid="journeys")
        customer_signals.events_ingested.connect(
            receivers.on_events_ingested, dispatch_uid="journeys"
        )
