# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""On the controller: what must change on a host, decided from the state
pik3s.cluster.k3s_host_info read, so that nothing probes the host again.
Each function is a rule table's worth of logic, exposed as a filter
(plugins/filter/k3s_plan.py) and unit-tested as tables."""

from __future__ import annotations

import re

# iptables builds known to misbehave with K3s in nf_tables mode (K3s docs): 1.6.1 and older, 1.8.0-1.8.4.
_IPTABLES_BAD = (((0,), (1, 6, 1)), ((1, 8, 0), (1, 8, 4)))
_FSTAB_SWAP = re.compile(r"^([^#\s]\S*\s+\S+\s+swap\s.*)$")
FSTAB_MARK = "  # disabled by pik3s"
# A module whose feature the kernel shows without listing the module (built in, no parameters).
_FEATURE = {
    "overlay": lambda km: "overlay" in km.get("filesystems", []),
    "br_netfilter": lambda km: bool(km.get("bridge_netfilter")),
}


class PlanError(ValueError):
    """The host state lacks what a decision needs."""


def module_present(name, kernel_modules):
    """Whether a kernel module is usable now: loaded, built in, in /sys/module, or its feature is there."""
    key = name.replace("-", "_")
    km = kernel_modules or {}
    if key in km.get("loaded", []) or key in km.get("builtin", []) or key in km.get("sys", []):
        return True
    feature = _FEATURE.get(key)
    return bool(feature and feature(km))


def _version_tuple(text):
    return tuple(int(x) for x in re.findall(r"\d+", str(text))[:3])


def iptables_needs_legacy(iptables, setting="auto"):
    """Switch to iptables-legacy: setting auto, nf_tables mode, a version in a known-bad range."""
    if setting != "auto" or not iptables or iptables.get("mode") != "nf_tables" or not iptables.get("version"):
        return False
    version = _version_tuple(iptables["version"])
    return any(low <= version <= high for low, high in _IPTABLES_BAD)


def cmdline_file(state, candidates):
    """The first kernel command line file that exists, among the candidates ('' for none)."""
    contents = state.get("contents") or {}
    for path in candidates:
        if contents.get(path) is not None:
            return path
    return ""


def cmdline_line(text):
    """The single line of a cmdline.txt (its first line, trimmed)."""
    lines = (text or "").splitlines()
    return lines[0].strip() if lines else ""


def fstab_without_swap(text):
    """/etc/fstab with every active swap entry commented out (marked as pik3s's), or None if none is active."""
    if text is None:
        return None
    out, changed = [], False
    for line in text.splitlines():
        if _FSTAB_SWAP.match(line):
            out.append(f"# {line}{FSTAB_MARK}")
            changed = True
        else:
            out.append(line)
    return "\n".join(out) + "\n" if changed else None


def sysctls_differ(wanted, current):
    """The keys whose running value is not the wanted one (unknown counts as different)."""
    out = []
    for key, value in (wanted or {}).items():
        now = (current or {}).get(key)
        if now is None or " ".join(str(now).split()) != " ".join(str(value).split()):
            out.append(key)
    return out


def prepare_plan(state, settings):
    """What the prepare role must do on a host. ``settings``:

    pi_model, swap_off, modules, sysctls, iptables ('auto'/'keep'), cgroup_tokens, cmdline_candidates,
    modules_file, modules_content, sysctl_file, sysctl_content, fstab, dphys_binary, dphys_unit, swapfile.
    """
    if not isinstance(state, dict) or "files" not in state:
        raise PlanError("the host state from pik3s.cluster.k3s_host_info is missing or incomplete")
    s = settings
    files = state.get("files", {})
    units = state.get("units", {})
    plan = {"files": {"cgroup": [], "kernel": [], "swap": []}, "cmdline": {"path": "", "missing": []}, "reboot": False,
            "memory_cgroup_active": bool(state.get("memory_cgroup", {}).get("active"))}

    if s.get("pi_model"):
        path = cmdline_file(state, s["cmdline_candidates"])
        if path:
            line = cmdline_line(state["contents"][path])
            missing = [t for t in s["cgroup_tokens"] if t not in line.split()]
            plan["cmdline"] = {"path": path, "missing": missing}
            if missing:
                plan["files"]["cgroup"].append({"path": path, "label": "cmdline",
                                                "content": f"{(line + ' ' + ' '.join(missing)).strip()}\n"})
                plan["reboot"] = not plan["memory_cgroup_active"]

    plan["files"]["kernel"] = [
        {"path": s["modules_file"], "content": s["modules_content"], "owner": "root", "group": "root",
         "mode": "0644", "label": "modules-load"},
        {"path": s["sysctl_file"], "content": s["sysctl_content"], "owner": "root", "group": "root",
         "mode": "0644", "label": "sysctl"}]
    plan["load_modules"] = [m for m in s["modules"] if not module_present(m, state.get("kernel_modules"))]
    plan["sysctls_differ"] = sysctls_differ(s["sysctls"], state.get("sysctls"))

    dphys = bool((files.get(s["dphys_binary"]) or {}).get("exists"))
    unit = units.get(s["dphys_unit"]) or {}
    swap = {"stop": False, "disable": False, "uninstall": False, "swapoff": False}
    if s.get("swap_off"):
        if dphys:
            swap["stop"] = unit.get("active") in ("active", "activating")
            swap["disable"] = unit.get("enabled") == "enabled"
            swap["uninstall"] = bool((files.get(s["swapfile"]) or {}).get("exists"))
        swap["swapoff"] = bool(state.get("swap", {}).get("active"))
        fstab = fstab_without_swap((state.get("contents") or {}).get(s["fstab"]))
        if fstab is not None:
            plan["files"]["swap"].append({"path": s["fstab"], "content": fstab, "label": "fstab"})
    plan["swap"] = swap
    plan["iptables_legacy"] = iptables_needs_legacy(state.get("iptables"), s.get("iptables", "auto"))
    # Whether any step after the files step has something to do (or to check) whatever the files step
    # writes: the role includes those steps only then, so a prepared host costs no task for them.
    plan["act"] = bool(not plan["memory_cgroup_active"] or plan["reboot"] or any(swap.values())
                       or plan["load_modules"] or plan["sysctls_differ"] or plan["iptables_legacy"])
    return plan


def service_plan(unit, changed_paths=(), restart_paths=(), reload_paths=(), check_mode=False):
    """How to bring a unit to enabled and running after its files were written.

    ``unit``: k3s_host_info's facts of the unit before the write; ``changed_paths``: what the write changed;
    ``restart_paths``: files whose change needs a restart; ``reload_paths``: unit files (daemon-reload).
    Returns {'run', 'state' (started/restarted/None), 'enabled', 'daemon_reload', 'wait'}."""
    unit = unit or {}
    changed = set(changed_paths or ())
    loaded = unit.get("load") == "loaded"
    unit_written = bool(changed & set(reload_paths or ()))
    running = unit.get("active") in ("active", "activating", "reloading")
    restart = running and bool(changed & set(restart_paths or ()))
    state = "restarted" if restart else None if running else "started"
    plan = {"state": state, "enabled": True,
            "daemon_reload": unit_written or bool(unit.get("need_daemon_reload")),
            "wait": state is not None}
    needed = state is not None or unit.get("enabled") != "enabled" or plan["daemon_reload"]
    # A check run cannot start a unit whose file it only pretended to write.
    plan["run"] = needed and (loaded or not check_mode)
    return plan


def tool_links(files, names, bin_dir, binary, other_dir="/usr/bin"):
    """Links bin_dir/<name> -> binary for kubectl, crictl, ctr, as install.sh makes them: unless another
    package provides the tool (in other_dir, or a file in bin_dir that is not our link)."""
    out = []
    for name in names:
        ours = f"{bin_dir}/{name}"
        other = files.get(f"{other_dir}/{name}") or {}
        here = files.get(ours) or {}
        if other.get("exists"):
            continue
        if here.get("exists") and not (here.get("type") == "link" and here.get("link") == binary):
            continue
        out.append({"path": ours, "state": "link", "target": binary, "label": name})
    return out


# The agents join in at most AGENT_BATCHES batches of at least AGENT_BATCH_MIN (k3s_agent_batch unset):
# few batches, since each one waits for its slowest node, and small enough that a systematic
# failure (a wrong endpoint, a firewall) stops the deploy after one batch, not the whole fleet.
AGENT_BATCHES = 4
AGENT_BATCH_MIN = 5


def agent_batch(agent_count):
    """The default agent batch (site.yml's serial) for ``agent_count`` agents."""
    if isinstance(agent_count, bool) or not isinstance(agent_count, int) or agent_count < 0:
        raise PlanError(f"an agent count is a whole number, not {agent_count!r}")
    return max(AGENT_BATCH_MIN, -(-agent_count // AGENT_BATCHES))


def selected_phases(phases, prefix, run_tags=("all",), skip_tags=()):
    """The phases of a role whose tag (prefix + phase) this run selects, by --tags and --skip-tags."""
    run, skip = set(run_tags or ("all",)), set(skip_tags or ())
    out = []
    for phase in phases:
        tag = prefix + phase
        chosen = bool(run & {"all", "tagged", tag})
        if chosen and not skip & {tag, "tagged", "all"}:
            out.append(phase)
    return out
