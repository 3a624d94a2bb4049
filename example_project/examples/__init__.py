"""Runnable examples, one module per example: ``python manage.py zart_example <name>``."""
