"""Native REST API over milestones: definitions, a subject's progress, the outcomes feed and
the dry run. Thin shells over ``milestones.api.selectors`` and ``milestones.dryrun``."""
