"""Stand-ins for the outside services of the examples: a mail server and a payment API."""

import hashlib
import time
from dataclasses import dataclass


class Mailer:
    def send(self, to: str, subject: str) -> None:
        time.sleep(0.05)  # the mail server's round trip


@dataclass(frozen=True)
class Customer:
    id: str


class Stripe:
    def create_customer(self, email: str) -> Customer:
        time.sleep(0.05)
        return Customer("cus_" + hashlib.sha256(email.encode()).hexdigest()[:14])


mailer = Mailer()
stripe = Stripe()
