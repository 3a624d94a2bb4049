"""The demo's workflow: a customer onboarding with a flaky billing API."""

import random
import time

import django_zart as zart


@zart.step("send-welcome-email")
def send_welcome_email(email: str) -> str:
    time.sleep(0.2)  # talk to a mail server
    return "sent to %s" % email


@zart.step("create-account")
def create_account(email: str) -> int:
    time.sleep(0.2)
    return random.randint(1000, 9999)


@zart.step("open-billing", retry=zart.Retry.exponential(3, "500ms"))
def setup_billing(account_id: int) -> str:
    info = zart.context()
    if info.attempt == 1 and account_id % 2:
        raise ConnectionError("billing API timed out")  # retried after 0.5s, durably
    time.sleep(0.2)
    return "cus_%d" % account_id


@zart.workflow("signup", timeout="5m")
def onboarding(data: dict) -> dict:
    email = send_welcome_email(data["email"])
    account = create_account(data["email"])
    customer = setup_billing(account)
    return {"email": email, "account": account, "customer": customer}
