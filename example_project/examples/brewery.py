"""Breweries near a ZIP code, from two public APIs: Zippopotam.us gives the city, Open
Brewery DB its breweries. Each call is a step retried with an exponential back-off, so a
failing API costs a wait, not the workflow (--offline replays recorded answers locally,
and fails the first call to show it)."""

import json
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack
from typing import Any

from django.conf import settings

import django_zart as zart
from django_zart.serialization import decode

from .replay import ReplayServer
from .runner import Example, new_id


class NotFound(Exception):
    """The API has no answer for this question: asking again will not change that."""


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http(s) only
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise NotFound(url) from None
        raise  # a 5xx, a 429: retried


@zart.step("lookup-zip", retry=zart.Retry.exponential(3, "500ms"), give_up_on=(NotFound,))
def lookup_zip(api: str, country: str, code: str) -> dict:
    place = get_json("%s/%s/%s" % (api, country, code))["places"][0]
    return {"city": place["place name"], "state": place["state"]}


@zart.step("find-breweries", retry=zart.Retry.exponential(3, "500ms"), give_up_on=(NotFound,))
def find_breweries(api: str, city: str, state: str) -> list[dict]:
    query = urllib.parse.urlencode(
        {"by_city": city.lower().replace(" ", "_"), "by_state": state.lower(), "per_page": 3}
    )
    return get_json("%s/breweries?%s" % (api, query))  # type: ignore[no-any-return]


@zart.workflow("breweries-near")
def breweries_near(data: dict) -> dict:
    place = lookup_zip(data["zip_api"], data["country"], data["zip"])
    breweries = find_breweries(data["brewery_api"], place["city"], place["state"])
    # Shaping the answers is plain code: it gives the same result on every replay.
    return {
        "zip": data["zip"],
        "city": "%s, %s" % (place["city"], place["state"]),
        "breweries": [
            "%s (%s), %s" % (b["name"], b["brewery_type"], b["address_1"]) for b in breweries
        ],
    }


def run(example: Example) -> None:
    with ExitStack() as stack:
        if example.options.get("offline"):
            server = stack.enter_context(ReplayServer())
            zip_api, brewery_api = server.url + "/zippopotam", server.url + "/openbrewerydb/v1"
            example.say(
                "Offline: the APIs are replayed by %s (its first answer is a 503)." % server.url
            )
        else:
            zip_api = getattr(settings, "BREWERY_ZIP_API_URL", "https://api.zippopotam.us")
            brewery_api = getattr(settings, "BREWERY_API_URL", "https://api.openbrewerydb.org/v1")
            example.say("Asking %s and %s (--offline replays them)." % (zip_api, brewery_api))
        data = {"zip": "94107", "country": "us", "zip_api": zip_api, "brewery_api": brewery_api}
        execution_id = zart.start("breweries-near", data, execution_id=new_id("breweries"))
        executions = example.follow(execution_id)
    output = decode(executions[execution_id].output)
    for line in (output or {}).get("breweries", []):
        example.say("  - %s" % line)
