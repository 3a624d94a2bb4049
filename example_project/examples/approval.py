"""An expense request waits for a manager's decision, an event, for a limited time:
approved or rejected by the decision, or rejected when none comes in time."""

import time

import django_zart as zart

from .runner import Example, new_id

EVENT_TOKEN = "example-project-event-token"  # noqa: S105 - the example project's, see settings


class InvalidRequest(Exception):
    pass


@zart.step("validate-request", give_up_on=(InvalidRequest,))
def validate_request(request: dict) -> dict:
    if request["amount"] <= 0 or not request.get("reason"):
        raise InvalidRequest("an expense needs a positive amount and a reason")
    return {"amount": request["amount"], "reason": request["reason"]}


@zart.step("approve")
def approve(request: dict, by: str) -> str:
    return "%d EUR for %s approved by %s" % (request["amount"], request["reason"], by)


@zart.step("reject")
def reject(request: dict, why: str) -> str:
    return "%d EUR for %s rejected: %s" % (request["amount"], request["reason"], why)


@zart.workflow("expense-request")
def expense_request(data: dict) -> str:
    request = validate_request(data)
    try:
        # No thread waits: the execution is suspended until the event or the deadline.
        decision = zart.wait_for_event("decision", timeout=data["answer_within"])
    except zart.EventTimeout:
        return reject(request, "no decision in time")
    if decision["approved"]:
        return approve(request, decision["by"])
    return reject(request, "declined by %s" % decision["by"])


def send_decision(example: Example, execution_id: str, delay: float) -> None:
    time.sleep(delay)
    try:
        zart.send_event(execution_id, "decision", {"approved": True, "by": "dana"})
    except zart.ExecutionFinished:
        example.say("(%s had its decision already)" % execution_id)
    else:
        example.say("Sent the event 'decision' to %s: approved by dana." % execution_id)


def run(example: Example) -> None:
    answered = new_id("expense")
    unanswered = new_id("expense")
    delay = example.duration(5, 0.2)
    zart.start(
        "expense-request",
        {"amount": 120, "reason": "a train ticket", "answer_within": example.duration(60, 10)},
        execution_id=answered,
    )
    zart.start(
        "expense-request",
        {"amount": 4000, "reason": "a sofa", "answer_within": example.duration(10, 0.5)},
        execution_id=unanswered,
    )
    example.say("Started %s and %s." % (answered, unanswered))
    example.say(
        "The example sends %s its decision in %g s, and %s none. To send one yourself:\n"
        "- the admin: python manage.py runserver, then http://127.0.0.1:8000/admin/"
        "django_zart/execution/%s/change/, button 'Send event…' (name: decision)\n"
        "- the command line: python manage.py zart send-event %s decision"
        ' --data \'{"approved": false, "by": "sam"}\'\n'
        "- HTTP (with runserver): curl -X POST http://127.0.0.1:8000/zart/executions/%s"
        '/events/decision -H "Authorization: Bearer %s" -H "Content-Type: application/json"'
        ' -d \'{"approved": false, "by": "sam"}\''
        % (answered, delay, unanswered, answered, answered, answered, EVENT_TOKEN)
    )
    sender = example.in_background(lambda: send_decision(example, answered, delay))
    example.follow(answered, unanswered)
    sender.result()
