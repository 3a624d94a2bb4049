"""The JSON answer of every endpoint, in the shapes of ``django_zart.records``."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from ..records import Encoder


def ok(data: Any, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, encoder=Encoder, safe=False)
