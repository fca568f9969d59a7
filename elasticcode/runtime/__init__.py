"""The runtime: Celery app, socket task wrapper, plugs, joins, events. Imported by workers in
processor venvs, so it depends only on celery/kombu/redis and the standard library."""
