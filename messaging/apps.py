from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self) -> None:
        from consent import signals
        from messaging import receivers

        signals.confirmation_requested.connect(
            receivers.on_confirmation_requested, dispatch_uid="messaging"
        )
