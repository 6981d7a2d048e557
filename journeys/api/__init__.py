"""Native REST API over journeys: definitions (the working copy and the live version) with
their enrollment counts, and a customer's enrollments with their step history. Thin shells
over ``journeys.api.selectors``."""
