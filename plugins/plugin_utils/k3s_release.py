# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""On the controller: settle the K3s release to install and make its files
ready, verified against the release's own checksum files.

- The version is k3s_version, or the newest release of k3s_channel, read
  from the channel service's redirect (as install.sh does).
- Online: checksum files and one binary per CPU architecture present are
  downloaded once into a controller cache (``<cache>/<version>/``); a cached
  or downloaded file is used only when its sha256 is the one the release's
  checksum file states. Air-gap: the same files are taken from a directory
  on the controller, with the image tarballs, and checked the same way.
- A file that does not verify is reported (``ok: false``), not raised, so
  that only the hosts of that CPU stop.
- ``known_binaries`` maps the sha256 of every binary in the cache's (and
  the air-gap directory's) checksum files to its version, so that the
  version installed on a host is known from its binary's sha256 without
  running it.

The network is reached through the ``opener`` given (the action passes
Ansible's ``open_url``), so the rules are tested without one.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
import urllib.error
import urllib.parse

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_arch import arch_assets
from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_digest import sha256_file
from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_version import is_release

IMAGES_NAME = "k3s-airgap-images-%s.tar.gz"
BINARY_ASSETS = ("k3s", "k3s-arm64", "k3s-armhf")
_LINE = re.compile(r"^([0-9a-f]{64})\s+\*?(\S+)\s*$")
_CHUNK = 1024 * 1024


class ReleaseError(Exception):
    """The release cannot be settled for any host (version, channel, checksum file)."""


def parse_checksums(text):
    """{asset name: sha256} from a sha256sum file."""
    out = {}
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m:
            out[m.group(2)] = m.group(1)
    return out


def resolve_version(version, channel, channel_url, airgap_dir, opener):
    if version:
        out = version
    elif airgap_dir:
        raise ReleaseError("k3s_airgap_dir is set: set k3s_version too (channels cannot be resolved offline).")
    else:
        url = f"{channel_url.rstrip('/')}/{channel}"
        try:
            resp = opener(url, follow_redirects="none")
            location = resp.headers.get("Location") if resp is not None else None
        except urllib.error.HTTPError as exc:
            location = exc.headers.get("Location") if 300 <= exc.code < 400 else None
            if location is None:
                raise ReleaseError(f"the K3s channel '{channel}' could not be resolved: {url} answered "
                                   f"{exc.code} {exc.reason} (set k3s_version, or k3s_channel to a channel "
                                   "that exists)") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ReleaseError(f"the K3s channel '{channel}' could not be resolved: {url}: "
                               f"{getattr(exc, 'reason', exc)} (check k3s_channel_url, or set k3s_version)") from None
        if not location:
            raise ReleaseError(f"the K3s channel '{channel}' could not be resolved: {url} did not redirect to a "
                               "release (set k3s_version, or k3s_channel to a channel that exists)")
        out = urllib.parse.unquote(urllib.parse.urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1])
    if not is_release(out):
        raise ReleaseError(f"K3s version '{out}' is not a release name like v1.31.4+k3s1 "
                           "(set k3s_version, or k3s_channel to a channel that exists).")
    return out


def _download(opener, url, dest):
    """Download to dest atomically (a temporary file in its directory, then a rename); return its sha256."""
    import hashlib

    directory = os.path.dirname(dest)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=directory)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            resp = opener(url)
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        os.rename(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return digest.hexdigest()


def _asset(ok, path, sha256, error, checksum_file):
    if ok:
        problem = ""
    elif error.startswith("the sha256"):
        problem = f"did not match the release checksum ({checksum_file} says {sha256})"
    else:
        problem = f"could not be verified: {error}"
    return {"ok": ok, "path": path, "sha256": sha256, "checksum_file": checksum_file, "error": error,
            "problem": problem}


def _fetch_error(exc):
    if isinstance(exc, urllib.error.HTTPError):
        return f"{exc.code} {exc.reason}"
    return str(getattr(exc, "reason", exc))


def prepare(version, architectures, release_url, cache_dir, airgap_dir, opener):
    """{'version', 'assets': {name: {ok, path, sha256, checksum_file, error, problem}}, 'known_binaries'}.

    ``problem`` is what the operator is told when the file is not ok: that it did not match the release
    checksum, or why it or its checksum could not be had (``error``)."""
    arches, seen = [], set()
    for arch in architectures:
        try:
            facts = arch_assets(arch)
        except ValueError:
            continue  # the inventory check names hosts with unsupported CPUs
        if facts["asset"] not in seen:
            seen.add(facts["asset"])
            arches.append(facts)
    assets = {}
    if airgap_dir:
        for facts in arches:
            sums_path = os.path.join(airgap_dir, facts["checksum_file"])
            try:
                with open(sums_path, encoding="utf-8") as f:
                    sums = parse_checksums(f.read())
            except OSError as exc:
                sums, sums_error = {}, f"cannot read {sums_path}: {exc.strerror}"
            else:
                sums_error = ""
            for name in (facts["asset"], IMAGES_NAME % facts["image_arch"]):
                path = os.path.join(airgap_dir, name)
                expected = sums.get(name, "")
                error = sums_error or ("" if expected else f"{facts['checksum_file']} lists no {name}")
                ok = False
                if not error:
                    if not os.path.isfile(path):
                        error = f"{path} does not exist"
                    else:
                        ok = sha256_file(path) == expected
                        error = "" if ok else f"the sha256 of {path} differs"
                assets[name] = _asset(ok, path, expected, error, facts["checksum_file"])
    else:
        release_dir = os.path.join(cache_dir, version)
        base = f"{release_url.rstrip('/')}/{urllib.parse.quote(version, safe='')}"
        for facts in arches:
            sums_path = os.path.join(release_dir, facts["checksum_file"])
            sums_error = ""
            if not os.path.isfile(sums_path):
                try:
                    _download(opener, f"{base}/{facts['checksum_file']}", sums_path)
                except (urllib.error.URLError, OSError) as exc:
                    sums_error = f"{base}/{facts['checksum_file']}: {_fetch_error(exc)}"
            sums = {}
            if not sums_error:
                with open(sums_path, encoding="utf-8") as f:
                    sums = parse_checksums(f.read())
            name = facts["asset"]
            path = os.path.join(release_dir, name)
            expected = sums.get(name, "")
            error = sums_error or ("" if expected else f"{facts['checksum_file']} lists no {name}")
            ok = False
            if not error:
                if os.path.isfile(path) and sha256_file(path) == expected:
                    ok = True
                else:
                    try:
                        got = _download(opener, f"{base}/{name}", path + ".unverified")
                    except (urllib.error.URLError, OSError) as exc:
                        error = f"{base}/{name}: {_fetch_error(exc)}"
                    else:
                        if got == expected:
                            os.rename(path + ".unverified", path)
                            os.chmod(path, 0o755)  # noqa: S103 - an executable, as the release ships it
                            ok = True
                        else:
                            os.unlink(path + ".unverified")
                            error = f"the sha256 of the download of {base}/{name} is {got}"
            assets[name] = _asset(ok, path, expected, error, facts["checksum_file"])
    return {"version": version, "assets": assets,
            "known_binaries": known_binaries(cache_dir, airgap_dir and (airgap_dir, version))}


def known_binaries(cache_dir, airgap=None):
    """{sha256: version} of every K3s binary named in the cache's checksum files (and the air-gap dir's)."""
    out = {}
    sources = [(p, os.path.basename(os.path.dirname(p)))
               for p in glob.glob(os.path.join(glob.escape(cache_dir), "*", "sha256sum-*.txt"))]
    if airgap:
        sources += [(p, airgap[1]) for p in glob.glob(os.path.join(glob.escape(airgap[0]), "sha256sum-*.txt"))]
    for path, version in sources:
        if not is_release(version):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                sums = parse_checksums(f.read())
        except OSError:
            continue
        for name, sha in sums.items():
            if name in BINARY_ASSETS:
                out[sha] = version
    return out
