"""What fails and what is done about it: a flaky call retried, a business error not
retried (give_up_on), a step whose failure has a default (step_or), and a failure handler
(on_failure) that undoes what a failed execution did."""

import django_zart as zart

from .runner import Example, new_id


class CouponExpired(Exception):
    """A business error: trying again cannot make it right."""


class NoCourier(Exception):
    """No courier takes the parcel: the order cannot go on."""


@zart.step("reserve-stock")
def reserve_stock(order: dict) -> str:
    return "reserved %d x %s" % (order["quantity"], order["item"])


@zart.step("charge-card", retry=zart.Retry.fixed(3, "500ms"))
def charge_card(order: dict) -> str:
    if zart.context().attempt == 1:
        raise ConnectionError("payment provider timed out")  # retried after 0.5 s
    return "charged %d cents" % (order["quantity"] * 1250)


@zart.step("apply-coupon", retry=zart.Retry.fixed(3, "500ms"), give_up_on=(CouponExpired,))
def apply_coupon(code: str) -> int:
    raise CouponExpired("coupon %s expired yesterday" % code)  # fails at once, no retry


@zart.step("book-courier", give_up_on=(NoCourier,))
def book_courier(order: dict) -> str:
    if order.get("remote"):
        raise NoCourier("no courier delivers to %s" % order["city"])
    return "courier booked for %s" % order["city"]


@zart.step("release-stock")
def release_stock(order: dict) -> str:
    return "released %d x %s" % (order["quantity"], order["item"])


def undo_order(order: dict, error: dict) -> None:
    """Runs once the order failed for good: its steps are checkpointed too."""
    release_stock(order)


@zart.workflow("shop-order", on_failure=undo_order)
def shop_order(order: dict) -> dict:
    reserved = reserve_stock(order)
    discount = zart.step_or(lambda: apply_coupon(order["coupon"]), 0)  # 0 if it fails
    charged = charge_card(order)
    courier = book_courier(order)  # a failure here fails the order: undo_order runs
    return {"reserved": reserved, "discount": discount, "charged": charged, "courier": courier}


def run(example: Example) -> None:
    order = {"item": "teapot", "quantity": 2, "coupon": "SPRING", "city": "Lyon"}
    first = zart.start("shop-order", order, execution_id=new_id("order"))
    example.say("Started %s: its coupon has expired and the card fails once." % first)
    example.follow(first)
    remote = {**order, "city": "Ushuaia", "remote": True}
    second = zart.start("shop-order", remote, execution_id=new_id("order"))
    example.say()
    example.say("Started %s: no courier delivers there, so the order fails." % second)
    example.follow(second)
