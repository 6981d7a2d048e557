"""No tables: roles are auth groups. The module exists so Django sends this app
``post_migrate`` (it skips apps without one), after which the groups are synced."""
