"""Native REST API over messaging: the in-app inbox the product serves to its end users
(read with an API token by the product's backend), and a customer's send log. Thin shells
over ``messaging.api.selectors``, ``messaging.selectors`` and ``messaging.inbox``."""
