"""The Django admin of django-zart.

It shows state and changes it only through the Python API (``django_zart.operations``,
``pauses``, ``client``): no form writes a status. Importing this package registers
every admin.
"""

from . import executions, tables
from .display import cut_head, cut_tail

__all__ = ["cut_head", "cut_tail", "executions", "tables"]
