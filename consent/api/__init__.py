"""Native REST API over a customer's consent: subscriptions with their effective state, changes
with evidence, and the consent ledger. Thin shells over ``consent.api.selectors`` and
``consent.services.subscription_set``."""
