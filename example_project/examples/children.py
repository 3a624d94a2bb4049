"""A trip booked by a parent workflow: it runs two child workflows and waits for each
(run_workflow), then starts a third without waiting for it (start_workflow)."""

import time

import django_zart as zart

from .runner import Example, new_id


@zart.step("reserve-seat")
def reserve_seat(trip: dict) -> str:
    time.sleep(0.1)
    return "seat 14C to %s" % trip["to"]


@zart.step("reserve-room")
def reserve_room(trip: dict) -> str:
    time.sleep(0.1)
    return "room 203 in %s, %d nights" % (trip["to"], trip["nights"])


@zart.step("email-itinerary")
def email_itinerary(trip: dict) -> str:
    time.sleep(0.1)
    return "itinerary sent to %s" % trip["traveller"]


@zart.workflow("book-flight")
def book_flight(trip: dict) -> str:
    return reserve_seat(trip)


@zart.workflow("book-hotel")
def book_hotel(trip: dict) -> str:
    return reserve_room(trip)


@zart.workflow("send-itinerary")
def send_itinerary(trip: dict) -> str:
    return email_itinerary(trip)


@zart.workflow("book-trip")
def book_trip(trip: dict) -> dict:
    # Each child is an execution of its own, on any worker; the parent is suspended while
    # it waits, and a replay never starts a child twice.
    flight = zart.run_workflow("book-flight", trip)
    hotel = zart.run_workflow("book-hotel", trip)
    zart.start_workflow("send-itinerary", trip)  # not waited for
    return {"flight": flight, "hotel": hotel}


def run(example: Example) -> None:
    trip = {"traveller": "ada@example.com", "to": "Lisbon", "nights": 3}
    execution_id = zart.start("book-trip", trip, execution_id=new_id("trip"))
    example.follow(execution_id)
