from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customers"
    verbose_name = "Audience"

    def ready(self) -> None:
        from config.lookups import lookups_register

        lookups_register()
