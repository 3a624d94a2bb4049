"""Tables the test workflows write their side effects to."""

from django.db import models


class SideEffect(models.Model):
    """One row per real run of a step body: counts how often a step really ran."""

    execution_id = models.CharField(max_length=255, db_index=True)
    step = models.CharField(max_length=100)
    pid = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return "%s %s" % (self.execution_id, self.step)


class Flag(models.Model):
    """A switch the tests flip to change what a workflow does on its next replay."""

    name = models.CharField(max_length=100, primary_key=True)
    value = models.CharField(max_length=100)

    def __str__(self) -> str:
        return "%s=%s" % (self.name, self.value)
