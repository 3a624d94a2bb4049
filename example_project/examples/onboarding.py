"""The README's "A complete example": a welcome email and a billing customer, each a
checkpointed step, started for a user as a view would."""

from django.contrib.auth.models import User

from .runner import Example

# isort: split
# myapp/workflows.py — found in every installed app, like admin.py
import uuid

from django.core.mail import send_mail

import django_zart as zart


@zart.step("send-email", retry=zart.Retry.exponential(3, "2s"))
def send_email(email: str) -> None:
    # Retried up to 3 times (after 2s, 4s, 8s) if the mail server fails.
    send_mail("Welcome!", "Glad you joined.", "hello@example.com", [email])


@zart.step("setup-billing")
def setup_billing(email: str) -> str:
    return "cus_" + uuid.uuid4().hex[:14]  # your payment provider's call goes here


@zart.workflow("onboarding", timeout="30m", max_retries=1)
def onboarding(data: dict) -> dict:
    send_email(data["email"])  # checkpointed, retried
    customer = setup_billing(data["email"])  # checkpointed: a replay gets the same id
    return {"customer": customer}


def signup() -> dict:
    """The README's second block, as a view would run it."""
    # a view, a shell, a test
    from django.contrib.auth.models import User
    from django.db import transaction

    import django_zart as zart

    with transaction.atomic():
        user, _ = User.objects.get_or_create(username="alice", email="alice@example.com")
        execution_id = zart.start(
            "onboarding",
            {"email": user.email},
            execution_id=f"signup-user-{user.pk}",
            if_exists="return",  # started before: its id, not an error
        )

    output = zart.wait_completion(execution_id, timeout=60)  # {"customer": "cus_..."}
    return output


def run(example: Example) -> None:
    user = User.objects.filter(username="alice").first()
    again = user is not None and zart.executions().filter(pk="signup-user-%d" % user.pk).exists()
    outcome = example.in_background(signup)
    user = example.eventually(lambda: User.objects.filter(username="alice").first())
    example.follow("signup-user-%d" % user.pk)
    example.say("wait_completion() returned %r" % outcome.result())
    if again:
        example.say(
            "It ran before: the execution id is the idempotency key, so start(...,"
            ' if_exists="return") gave back the first execution instead of a second one.'
        )
