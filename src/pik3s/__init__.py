"""pik3s: deploy and operate K3s clusters on Raspberry Pis and Debian/Ubuntu hosts.

The API (``pik3s.deploy``, ``check``, ``add_nodes``, ``upgrade``,
``remove_nodes``, ``backup``, ``restore``, ``reset``, ``status``,
``dashboard`` and the asynchronous ``start``) is in ``pik3s.api``; results
in ``pik3s.results``.
"""

from __future__ import annotations

from pik3s._version import __version__
from pik3s.api import (
    add_nodes,
    backup,
    check,
    dashboard,
    deploy,
    remove_nodes,
    reset,
    restore,
    start,
    status,
    upgrade,
)
from pik3s.results import Result

__all__ = ["Result", "__version__", "add_nodes", "backup", "check", "dashboard", "deploy", "remove_nodes", "reset",
           "restore", "start", "status", "upgrade"]
