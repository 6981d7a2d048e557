"""Operations: liveness, readiness, Prometheus metrics and the beat heartbeat.

Nothing in the pipeline imports this app; it reads every other app's tables (through
``ops.selectors``) and owns one tiny table of its own, the beat heartbeats."""
