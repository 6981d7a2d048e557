from django.apps import AppConfig


class MilestonesConfig(AppConfig):
    name = "milestones"

    def ready(self) -> None:
        from customers import signals
        from milestones import receivers

        signals.events_stored.connect(receivers.on_events_stored, dispatch_uid="milestones")
        signals.events_ingested.connect(receivers.on_events_ingested, dispatch_uid="milestones")
        signals.customers_merged.connect(receivers.on_customers_merged, dispatch_uid="milestones")
