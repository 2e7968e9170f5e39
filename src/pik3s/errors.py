"""Exceptions the driver raises with operator-facing messages."""


class Pik3sError(Exception):
    """An error whose message is meant for the operator, shown without a traceback."""


class UsageError(Pik3sError):
    """A command line pik3s cannot take (exit code 2, as argparse's own errors)."""
