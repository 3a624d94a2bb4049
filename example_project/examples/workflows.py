"""Registers every example's workflows, so that any worker of the project can run them."""

from .catalog import load_all

load_all()
