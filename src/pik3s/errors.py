"""Exceptions the driver raises with operator-facing messages."""


class Pik3sError(Exception):
    """An error whose message is meant for the operator, shown without a traceback."""
