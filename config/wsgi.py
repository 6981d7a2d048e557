import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

from config.collector import collector_tune  # noqa: E402 -- needs the settings loaded

collector_tune()  # each web worker, once the app is loaded (config/collector.py)
