"""Which pik3s.cluster collection the driver runs, and that its version is pik3s's own.

Looked for, in this order (the first that holds ``ansible_collections/pik3s/cluster``):

1. ``$PIK3S_COLLECTIONS_PATH``: the operator's explicit choice;
2. ``$ANSIBLE_COLLECTIONS_PATH``'s entries: where Ansible would look first (an execution
   environment sets it);
3. the checkout pik3s runs from (``collections/`` links back to it);
4. the collection bundled in pik3s's own package (``site-packages/ansible_collections``,
   as the ``ansible`` package bundles its collections);
5. Ansible's default collection paths (``~/.ansible/collections``, ``/usr/share/ansible/collections``).

The runner points ``ANSIBLE_COLLECTIONS_PATH`` at the one found, so ansible-playbook loads that
one and no other. A collection whose version is not pik3s's is refused unless
``PIK3S_ALLOW_COLLECTION_MISMATCH=1``; a pik3s.cluster of another version in Ansible's default
paths that pik3s does not use is reported, not used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pik3s._version import __version__, read_version
from pik3s.errors import Pik3sError

SUBDIR = Path("ansible_collections/pik3s/cluster")
CHECKOUT = Path(__file__).resolve().parents[2]
BUNDLED = Path(__file__).resolve().parents[1]  # site-packages, when pik3s is installed from its wheel
ALLOW_ENV = "PIK3S_ALLOW_COLLECTION_MISMATCH"


@dataclass(frozen=True)
class Found:
    root: Path        # the directory that holds ansible_collections/pik3s/cluster
    version: str
    origin: str       # PIK3S_COLLECTIONS_PATH | ANSIBLE_COLLECTIONS_PATH | checkout | bundled | default path
    notes: tuple[str, ...] = field(default=())

    @property
    def path(self) -> Path:
        return self.root / SUBDIR


def collection_version(root: Path) -> str | None:
    """The version of the pik3s.cluster under ``root`` (None when there is none): MANIFEST.json
    for an installed collection, galaxy.yml for a source tree."""
    here = root / SUBDIR
    manifest = here / "MANIFEST.json"
    try:
        if manifest.is_file():
            return str(json.loads(manifest.read_text())["collection_info"]["version"])
        if (here / "galaxy.yml").is_file():
            return read_version(here / "galaxy.yml")
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable"
    return None


def _default_paths() -> list[Path]:
    return [Path.home() / ".ansible/collections", Path("/usr/share/ansible/collections")]


def _candidates() -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    given = os.environ.get("PIK3S_COLLECTIONS_PATH")
    if given:
        return [(Path(given), "PIK3S_COLLECTIONS_PATH")]
    for entry in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep):
        if entry:
            found.append((Path(entry), "ANSIBLE_COLLECTIONS_PATH"))
    found.append((CHECKOUT / "collections", "checkout"))
    found.append((BUNDLED, "bundled"))
    found += [(p, "default path") for p in _default_paths()]
    return found


def find_collection() -> Found:
    """The collection pik3s runs (see the module's docstring); raises Pik3sError when there is none
    or its version is not pik3s's (unless the operator allows it)."""
    candidates = _candidates()
    for root, origin in candidates:
        version = collection_version(root)
        if version is None:
            continue
        notes = []
        if origin in ("checkout", "bundled"):
            for other in _default_paths():
                theirs = collection_version(other)
                if theirs is not None and theirs != version:
                    notes.append(f"{other / SUBDIR} holds pik3s.cluster {theirs}: not used (pik3s {__version__} "
                                 f"runs its {origin} collection {version})")
        if version != __version__:
            if os.environ.get(ALLOW_ENV) != "1":
                raise Pik3sError(
                    f"the pik3s.cluster collection at {root / SUBDIR} ({origin}) is version {version}, and this "
                    f"is pik3s {__version__}: the driver and its playbooks must be the same release. Install "
                    f"pik3s.cluster {__version__}, or remove that one from the path, or set {ALLOW_ENV}=1 to run "
                    "it anyway")
            notes.append(f"running pik3s.cluster {version} from {root / SUBDIR} ({origin}) with pik3s {__version__} "
                         f"({ALLOW_ENV}=1)")
        return Found(root, version, origin, tuple(notes))
    where = ", ".join(str(r) for r, _ in candidates)
    raise Pik3sError(f"cannot find the pik3s.cluster collection (looked in {where}): install pik3s from its wheel, "
                     "which carries it, or set PIK3S_COLLECTIONS_PATH to the directory that holds "
                     "ansible_collections/pik3s/cluster")
