"""Operations: liveness, readiness, Prometheus metrics, the beat heartbeat and the ops console
(an admin page for on-call engineers; ``ops/console.py``, ``ops/admin.py``).

Nothing in the pipeline imports this app; it reads every other app's tables (through
``ops.selectors``) and owns one tiny table of its own, the beat heartbeats. Its only hook into
the workers is counting task outcomes from Celery's signals (``ops/task_counts.py``)."""
