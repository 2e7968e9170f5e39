"""See scripts/bench-startup."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (["--help"], ["deploy", "--help"])


def measure(src: Path, argv: list[str]) -> dict[str, float | int | bool]:
    """One start-up of the pik3s command line from ``src`` (a src/ directory) in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
    code = "import sys; from pik3s.cli import main; sys.exit(main(sys.argv[1:]))"
    started = time.perf_counter()
    res = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *argv], env=env, capture_output=True,
                         text=True, check=False)
    wall = time.perf_counter() - started
    rows = [line.split("|") for line in res.stderr.splitlines() if line.startswith("import time:")][1:]
    # top-level imports (one space of indent) sum to the whole import time
    top = [int(r[1]) for r in rows if len(r) == 3 and r[2].startswith(" ") and not r[2].startswith("  ")]
    names = [r[2].strip() for r in rows if len(r) == 3]
    # the lab's share: the outermost imports of its modules (cumulative, so their own imports included)
    lab_rows = [(len(r[2]) - len(r[2].lstrip()), int(r[1])) for r in rows
                if len(r) == 3 and r[2].strip().startswith(("pik3s.lab", "pik3s_lab"))]
    outer = min((indent for indent, _ in lab_rows), default=0)
    lab_s = sum(us for indent, us in lab_rows if indent == outer) / 1e6
    return {"wall_s": wall, "import_s": sum(top) / 1e6, "lab_import_s": lab_s, "modules": len(names),
            "lab_loaded": any(n.startswith(("pik3s.lab", "pik3s_lab")) for n in names), "rc": res.returncode}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--compare", default="aec44f3", help="git ref to compare with (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.compare, "src"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        trees = {args.compare: Path(tmp) / "src", "this checkout": ROOT / "src"}
        samples: dict[str, dict[str, list[dict[str, float | int | bool]]]] = {
            label: {" ".join(c): [] for c in COMMANDS} for label in trees}
        for _ in range(args.rounds):  # alternate: the machine's noise hits both alike
            for label, src in trees.items():
                for cmd in COMMANDS:
                    samples[label][" ".join(cmd)].append(measure(src, cmd))
    report: dict[str, dict[str, dict[str, float | int | bool]]] = {}
    print(f"{'tree':<16} {'command':<20} {'wall (median)':>14} {'imports (median)':>17} {'of it the lab':>14} "
          f"{'modules':>8}  lab loaded")
    for label, by_cmd in samples.items():
        for cmd, runs in by_cmd.items():
            row = {"wall_s": round(statistics.median(float(r["wall_s"]) for r in runs), 3),
                   "lab_import_s": round(statistics.median(float(r["lab_import_s"]) for r in runs), 4),
                   "import_s": round(statistics.median(float(r["import_s"]) for r in runs), 3),
                   "modules": int(runs[-1]["modules"]), "lab_loaded": bool(runs[-1]["lab_loaded"]),
                   "rounds": len(runs)}
            report.setdefault(label, {})[cmd] = row
            print(f"{label:<16} {'pik3s ' + cmd:<20} {row['wall_s']:>13.3f}s {row['import_s']:>16.3f}s "
                  f"{row['lab_import_s']:>13.4f}s {row['modules']:>8}  {row['lab_loaded']}")
    reports = Path(os.environ.get("PIK3S_REPORT_DIR") or Path.home() / ".cache/pik3s/reports")
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "bench-startup.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwritten: {reports / 'bench-startup.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
