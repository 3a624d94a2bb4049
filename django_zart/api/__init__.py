"""The HTTP API: JSON over the operations of the Python API.

``django_zart.urls`` routes to it; each module has one concern: ``auth`` (who calls and
whether they may), ``bodies`` (reading request bodies), ``errors`` (error answers),
``routing`` (method dispatch and the shared checks), ``views`` (the endpoints),
``representations`` (rows as JSON), ``health``, ``metrics`` and ``openapi``.
"""
