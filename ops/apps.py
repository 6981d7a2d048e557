from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from celery import signals

        from ops import task_counts

        # Workers count each task's outcome for the ops console (ops/task_counts.py).
        uid = "ops.task_counts"
        signals.task_success.connect(task_counts.on_task_success, dispatch_uid=uid)
        signals.task_failure.connect(task_counts.on_task_failure, dispatch_uid=uid)
        signals.task_retry.connect(task_counts.on_task_retry, dispatch_uid=uid)
