"""The README's "A complete example": a welcome email and a billing customer, each a
checkpointed step, started for a user as a view would."""

# The README's code calls a mail server and Stripe; these stand-ins answer in their place.
from django.contrib.auth.models import User

from .runner import Example
from .services import mailer, stripe

# isort: split
# myapp/workflows.py — found in every installed app, like admin.py
import django_zart as zart


@zart.step("send-email", retry=zart.Retry.exponential(3, "2s"))
def send_email(email: str) -> None:
    mailer.send(email, "Welcome!")  # retried up to 3 times: after 2s, 4s, 8s


@zart.step("setup-billing")
def setup_billing(email: str) -> str:
    return stripe.create_customer(email).id


@zart.workflow("onboarding", timeout="30m", max_retries=1)
def onboarding(data: dict) -> dict:
    send_email(data["email"])  # checkpointed, retried
    customer = setup_billing(data["email"])  # checkpointed
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
