"""See scripts/release."""

from __future__ import annotations

import argparse
import email.parser
import importlib.util
import json
import os
import runpy
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# What a collection tarball may hold: Ansible content, its docs and changelog, sanity's ignore files.
COLLECTION_TOP = {"MANIFEST.json", "FILES.json", "README.md", "LICENSE", "CHANGELOG.rst", "meta", "roles",
                  "playbooks", "plugins", "inventories", "changelogs", "docs", "tests", ".ansible-lint",
                  ".ansible-lint-ignore", ".yamllint"}


class ReleaseError(Exception):
    pass


def run(*argv: str | Path, cwd: Path | None = None) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # ansible-doc for the changelog
    res = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, check=False, env=env)
    if res.returncode != 0:
        raise ReleaseError(f"{' '.join(map(str, argv))} failed:\n{(res.stdout + res.stderr)[-3000:]}")
    return res.stdout


def galaxy_version(tree: Path) -> str:
    """galaxy.yml's version, read by the tag's own pik3s/_version.py (what its packages will say)."""
    try:
        return str(runpy.run_path(str(tree / "src/pik3s/_version.py"))["read_version"](tree / "galaxy.yml"))
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"cannot read the version of {tree / 'galaxy.yml'}: {exc}") from None


def checkout(repo: Path, tag: str, dest: Path) -> None:
    if subprocess.run(["git", "-C", str(repo), "rev-parse", "-q", "--verify", f"refs/tags/{tag}"],
                      capture_output=True, check=False).returncode != 0:
        raise ReleaseError(f"no tag {tag} in {repo}")
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", tag], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def wheel_meta(path: Path) -> tuple[str, list[str]]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        meta = email.parser.Parser().parsestr(zf.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
                                              .decode())
        bundled = [json.loads(zf.read(n))["collection_info"]["version"] for n in names
                   if n == "ansible_collections/pik3s/cluster/MANIFEST.json"]
    return str(meta["Version"]), bundled


def sdist_version(path: Path) -> str:
    with tarfile.open(path) as tf:
        member = next(m for m in tf.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"))
        data = tf.extractfile(member)
        assert data is not None
        return str(email.parser.Parser().parsestr(data.read().decode())["Version"])


def collection_problems(path: Path, version: str) -> list[str]:
    problems = []
    with tarfile.open(path) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    if manifest["collection_info"]["version"] != version:
        problems.append(f"{path.name}: MANIFEST.json says {manifest['collection_info']['version']}")
    stray = sorted({n.split("/")[0] for n in names} - COLLECTION_TOP)
    stray += sorted(n for n in names if n.startswith("tests/") and not n.startswith("tests/sanity"))
    stray += sorted(n for n in names if n.startswith("inventories/lab"))
    if stray:
        problems.append(f"{path.name} holds files that are not the collection's: {', '.join(stray)}")
    return problems


def release(repo: Path, tag: str, out: Path) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "ansible_collections/pik3s/cluster"  # where antsibull-changelog looks for its plugins
        tree.mkdir(parents=True)
        checkout(repo, tag, tree)
        version = galaxy_version(tree)
        if tag != f"v{version}":
            raise ReleaseError(f"tag {tag} does not match galaxy.yml's version {version}: tag the release v{version}")
        # the changelog of this release, from the tag's fragments (in the scratch tree only)
        run(BIN / "antsibull-changelog", "lint", cwd=tree)
        run(BIN / "antsibull-changelog", "release", "--version", version, cwd=tree)
        (out / "CHANGELOG.rst").write_text((tree / "CHANGELOG.rst").read_text())
        # --no-isolation: the build tools of this venv (no index contacted); the wheel is built from the sdist
        run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, tree)
        run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, tree / "lab")
        run(BIN / "ansible-galaxy", "collection", "build", "--force", "--output-path", out, tree)
    artifacts = sorted(p for p in out.iterdir() if p.name.endswith((".whl", ".tar.gz")))
    problems = []
    for art in artifacts:
        if art.name.endswith(".whl"):
            got, bundled = wheel_meta(art)
            if got != version:
                problems.append(f"{art.name}: version {got}")
            if art.name.startswith("pik3s-") and bundled != [version]:
                problems.append(f"{art.name}: carries pik3s.cluster {bundled or 'not at all'}")
        elif art.name.startswith("pik3s-cluster-"):
            problems += collection_problems(art, version)
        elif (got := sdist_version(art)) != version:
            problems.append(f"{art.name}: version {got}")
    if f"v{version}" not in (out / "CHANGELOG.rst").read_text():
        problems.append(f"CHANGELOG.rst has no section for v{version}")
    if problems:
        raise ReleaseError("the artifacts do not agree:\n  " + "\n  ".join(problems))
    python_dists = [str(a) for a in artifacts if not a.name.startswith("pik3s-cluster-")]
    run(BIN / "twine", "check", "--strict", *python_dists)
    importer = "not installed (pip install galaxy-importer to run it)"
    if importlib.util.find_spec("galaxy_importer"):
        (collection,) = [a for a in artifacts if a.name.startswith("pik3s-cluster-")]
        with tempfile.TemporaryDirectory() as scratch:  # it writes importer_result.json where it runs
            report = run(sys.executable, "-m", "galaxy_importer.main", collection, cwd=Path(scratch))
        errors = [line for line in report.splitlines() if "ERROR" in line]
        if errors:
            raise ReleaseError(f"galaxy-importer on {collection.name}:\n  " + "\n  ".join(errors))
        importer = "passed"
    summary: dict[str, object] = {"tag": tag, "version": version, "twine_check": "passed", "galaxy_importer": importer,
                                  "artifacts": {a.name: a.stat().st_size for a in artifacts}}
    (out / "release.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description="build pik3s's release artifacts from a tag")
    parser.add_argument("tag")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: dist/TAG)")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the git repository of the tag (default: this one)")
    args = parser.parse_args()
    out = (args.out or ROOT / "dist" / args.tag).resolve()
    try:
        summary = release(args.repo, args.tag, out)
    except ReleaseError as exc:
        print(f"release: error: {exc}", file=sys.stderr)
        return 1
    for name, size in summary["artifacts"].items():  # type: ignore[attr-defined]
        print(f"{size / 1024:9.1f} KiB  {out / name}")
    print(f"CHANGELOG.rst, release.json in {out}; twine check passed; galaxy-importer: {summary['galaxy_importer']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
