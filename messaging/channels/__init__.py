"""Channel backends: one module per kind behind the small interface in ``base``."""
