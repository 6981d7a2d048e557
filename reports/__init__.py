"""Reports: the admin home's dashboard for lifecycle marketers (headline figures, cohort,
time-to-milestone and funnel charts) and its JSON twin.

Nothing in the pipeline imports this app; it only reads the other apps' tables (through
``reports.selectors`` and ``journeys.reports``) and owns no table, just the
``reports.view_reports`` permission."""
