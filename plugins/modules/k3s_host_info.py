#!/usr/bin/python
# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Read, in one call, everything pik3s decides on about a host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: k3s_host_info
author: pik3s developers (@pik3s)
version_added: 0.1.0
short_description: Read in one call everything pik3s decides on about a host
description:
  - Returns the operating system and Raspberry Pi model, the CPU, the kernel command line file and its
    flags, the memory cgroup state, swap, kernel modules (loaded, built in, persisted), sysctl values,
    the iptables version, the state of systemd units and, for every file pik3s manages, whether it
    exists, its type, mode, owner and group and a digest of its content.
  - Changes nothing. It replaces fact gathering and the separate C(stat), C(command) and C(slurp)
    tasks the roles would otherwise run, so that a converged host costs one round trip.
  - Secret files are never reported by their plain sha256, which would let a reader of the output test
    guesses of a short password, but by an HMAC-SHA256 keyed with O(fingerprint_key), a random key the
    controller makes for each run.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  paths:
    description:
      - Files, directories and links to describe. Regular files get a C(sha256).
      - A leading C(~user/) is expanded to that user's home.
    type: list
    elements: str
    default: []
  secret_paths:
    description:
      - Like O(paths), but a regular file's content is reported only as C(fingerprint), the HMAC of
        its bytes under O(fingerprint_key).
    type: list
    elements: str
    default: []
  token_files:
    description:
      - K3s token files. Their C(fingerprint) is the HMAC of the token's password, so the short and the
        secure form of one token compare equal.
    type: list
    elements: str
    default: []
  fingerprint_key:
    description: The key of the fingerprints; without it, secret files and tokens get no fingerprint.
    type: str
    default: ""
  contents:
    description: Small text files whose content is returned (at most 64 KiB each), such as the kernel command line.
    type: list
    elements: str
    default: []
  units:
    description: systemd units whose load, active and enablement state and main PID are returned.
    type: list
    elements: str
    default: []
  sysctls:
    description: Kernel parameters (C(net.ipv4.ip_forward)) whose current values are returned.
    type: list
    elements: str
    default: []
  sysctl_files:
    description: sysctl configuration files; the current values of every key they set are returned too.
    type: list
    elements: str
    default: []
  listings:
    description:
      - Directories whose regular files are listed (under C(listings), by directory) and described as in
        O(paths) (under C(files), by their full path). A missing directory lists nothing.
    type: list
    elements: str
    default: []
  space:
    description:
      - Paths whose filesystem's free space is returned (under C(space), by path), measured on the path, or
        on its nearest existing parent when it does not exist yet.
    type: list
    elements: str
    default: []
  user_paths:
    description:
      - Paths relative to the home of every login user (uid 1000 to 59999), described as in O(paths)
        under the key C(~user/path).
    type: list
    elements: str
    default: []
  user_secret_paths:
    description: Like O(user_paths), described as in O(secret_paths).
    type: list
    elements: str
    default: []
  user_blocks:
    description:
      - Marked blocks in files relative to every login user's home, as C(ansible.builtin.blockinfile)
        writes them; the text between the markers is returned under the key C(~user/path).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file, relative to the home.
        type: str
        required: true
      marker:
        description: The marker line, with C({mark}) standing for C(BEGIN) and C(END).
        type: str
        required: true
"""

EXAMPLES = r"""
- name: Read the host's state once
  pik3s.cluster.k3s_host_info:
    paths: [/usr/local/bin/k3s, /etc/rancher/k3s/config.yaml, /etc/rancher/k3s]
    secret_paths: [/etc/rancher/k3s/registries.yaml]
    token_files: [/etc/rancher/k3s/cluster-token]
    fingerprint_key: "{{ run_key }}"
    contents: [/boot/firmware/cmdline.txt, /boot/cmdline.txt, /etc/fstab]
    units: [k3s, k3s-agent, dphys-swapfile]
    sysctls: [net.ipv4.ip_forward]
  register: host_state
"""

RETURN = r"""
os:
  description: From C(/etc/os-release); C(distribution) as Ansible names it (Raspbian is Debian).
  returned: always
  type: dict
  sample: {distribution: Debian, version: "12", codename: bookworm, id: debian, raspios: true}
pi_model:
  description: The Raspberry Pi model (the device tree's C(model), or the C(Model) line of C(/proc/cpuinfo)), or empty.
  returned: always
  type: str
  sample: Raspberry Pi 4 Model B Rev 1.4
cpu:
  description: C(architecture) (C(uname -m)), C(cores), C(memory_mb).
  returned: always
  type: dict
  sample: {architecture: aarch64, cores: 4, memory_mb: 1849}
hostname:
  description: The host name.
  returned: always
  type: str
memory_cgroup:
  description: Whether the running kernel has the memory cgroup (C(active)) and where that was read (C(source)).
  returned: always
  type: dict
  sample: {active: true, source: /proc/cgroups}
swap:
  description: Active swap areas from C(/proc/swaps).
  returned: always
  type: dict
  sample: {active: [{name: /var/swap, type: file, size_kb: 102396}]}
kernel_modules:
  description:
    - C(loaded) (C(/proc/modules)), C(builtin) (C(modules.builtin)), C(sys) (C(/sys/module)),
      C(filesystems) (C(/proc/filesystems)), C(bridge_netfilter) (whether the bridge netfilter sysctls
      exist) and C(persisted) (module name to the modules-load files that list it).
  returned: always
  type: dict
sysctls:
  description: Current value of each kernel parameter asked for, or null when it does not exist.
  returned: always
  type: dict
  sample: {net.ipv4.ip_forward: "1"}
iptables:
  description: The iptables version and mode, when installed.
  returned: always
  type: dict
  sample: {version: 1.8.9, mode: nf_tables}
files:
  description:
    - Per path asked for (keyed as given), C(exists), C(type) (file, directory, link, other), C(mode) (C(0644)),
      C(owner), C(group), C(size), C(link) (a link's target), and C(sha256) or C(fingerprint) for files.
    - Token files also carry C(format) (short, secure, malformed).
  returned: always
  type: dict
contents:
  description: Text of each readable file in O(contents) (null when missing).
  returned: always
  type: dict
interfaces:
  description: The host's IPv4 addresses (C(ip -j -4 addr)), loopback left out.
  returned: always
  type: list
  elements: dict
  sample: [{ifname: eth0, address: 192.168.1.21, prefix: 24}]
units:
  description:
    - Per unit, C(load) (loaded, not-found), C(active), C(sub), C(enabled) (the unit file state), C(main_pid),
      C(need_daemon_reload).
  returned: always
  type: dict
users:
  description: Login users (uid 1000 to 59999) and their C(home), C(uid) and C(gid).
  returned: always
  type: dict
listings:
  description: Per directory of O(listings), the names of its regular files, sorted.
  returned: always
  type: dict
  sample: {/var/lib/rancher/k3s/server/manifests/pik3s: [headlamp.yaml]}
space:
  description:
    - Per path of O(space), the filesystem measured (C(measured_on), the path or its nearest existing parent),
      its C(free_bytes) (available to unprivileged users, as C(df) shows it) and C(size_bytes).
  returned: always
  type: dict
  sample: {/var/lib/rancher/k3s: {measured_on: /var/lib/rancher, free_bytes: 1048576, size_bytes: 8388608}}
blocks:
  description: Per C(~user/path) of O(user_blocks), the text between the markers, or null when there is no block.
  returned: always
  type: dict
"""

import glob
import grp
import os
import platform
import pwd
import re
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_digest import (
    fingerprint,
    mode_string,
    sha256_file,
    token_fingerprint,
    user_path,
)
from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_token import TokenError, parse_token

_MAX_CONTENT = 64 * 1024
_DISTRIBUTIONS = {"debian": "Debian", "raspbian": "Debian", "ubuntu": "Ubuntu"}
_MODULES_LOAD = ("/etc/modules-load.d/*.conf", "/run/modules-load.d/*.conf", "/usr/lib/modules-load.d/*.conf",
                 "/etc/modules")


def _module_name(path_or_name):
    name = os.path.basename(path_or_name.strip())
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.replace("-", "_")


def _token_format(text):
    try:
        return parse_token(text.strip())["format"]
    except TokenError:
        return "malformed"


class Host:
    """Reads of one host's files. ``root`` is "/" on a host; the unit tests point it at a fake root."""

    def __init__(self, root="/", machine=None, release=None):
        self.root = root
        self.machine = machine or platform.machine()
        self.release = release or platform.release()

    def path(self, path):
        try:
            path = user_path(path)
        except KeyError:
            return "/nonexistent/" + path  # no such user: nothing there
        return os.path.join(self.root, path.lstrip("/")) if self.root != "/" else path

    def read(self, path, limit=None):
        try:
            with open(self.path(path), "rb") as f:
                return f.read(limit) if limit else f.read()
        except OSError:
            return None

    def space(self, path):
        """Free and total bytes of the filesystem that holds ``path`` (or will: its nearest existing parent)."""
        measured = os.path.normpath(path) if path.startswith("/") else "/" + path
        while measured != "/" and not os.path.isdir(self.path(measured)):
            measured = os.path.dirname(measured)
        st = os.statvfs(self.path(measured))
        return {"measured_on": measured, "free_bytes": st.f_bavail * st.f_frsize,
                "size_bytes": st.f_blocks * st.f_frsize}

    def text(self, path):
        data = self.read(path)
        return None if data is None else data.decode("utf-8", "replace")

    def os_release(self):
        text = self.text("/etc/os-release") or self.text("/usr/lib/os-release") or ""
        values = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip('"').strip("'")
        os_id = values.get("ID", "").lower()
        return {"distribution": _DISTRIBUTIONS.get(os_id, values.get("NAME", os_id.capitalize())),
                "version": values.get("VERSION_ID", ""), "codename": values.get("VERSION_CODENAME", ""),
                "id": os_id, "id_like": values.get("ID_LIKE", ""), "pretty_name": values.get("PRETTY_NAME", ""),
                "raspios": os.path.exists(self.path("/etc/rpi-issue"))}

    def pi_model(self):
        model = ""
        # The device tree's model, where the kernel shows it (/proc/device-tree links there on a Pi).
        for path in ("/sys/firmware/devicetree/base/model", "/proc/device-tree/model"):
            model = (self.read(path) or b"").replace(b"\0", b"").decode("utf-8", "replace").strip()
            if model:
                break
        if not model:
            for line in (self.text("/proc/cpuinfo") or "").splitlines():
                key, sep, value = line.partition(":")
                if sep and key.strip() == "Model":
                    model = value.strip()
                    break
        return model if "Raspberry Pi" in model else ""

    def cpu(self):
        mem = 0
        for line in (self.text("/proc/meminfo") or "").splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
        return {"architecture": self.machine, "cores": os.cpu_count() or 1, "memory_mb": mem}

    def memory_cgroup(self):
        controllers = self.text("/sys/fs/cgroup/cgroup.controllers")
        if controllers is not None:
            return {"active": "memory" in controllers.split(), "source": "/sys/fs/cgroup/cgroup.controllers"}
        for line in (self.text("/proc/cgroups") or "").splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[0] == "memory":
                return {"active": fields[3] == "1", "source": "/proc/cgroups"}
        return {"active": False, "source": "/proc/cgroups"}

    def swap(self):
        active = []
        for line in (self.text("/proc/swaps") or "").splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3:
                active.append({"name": fields[0], "type": fields[1], "size_kb": int(fields[2])})
        return {"active": active}

    def kernel_modules(self):
        loaded = sorted({line.split()[0] for line in (self.text("/proc/modules") or "").splitlines() if line.strip()})
        builtin_text = self.text(f"/lib/modules/{self.release}/modules.builtin") or ""
        builtin = sorted({_module_name(line) for line in builtin_text.splitlines() if line.strip()})
        try:
            sys_modules = sorted(os.listdir(self.path("/sys/module")))
        except OSError:
            sys_modules = []
        filesystems = sorted({line.split()[-1] for line in (self.text("/proc/filesystems") or "").splitlines()
                              if line.strip()})
        persisted = {}
        for pattern in _MODULES_LOAD:
            for real in sorted(glob.glob(self.path(pattern))):
                path = "/" + os.path.relpath(real, self.root) if self.root != "/" else real
                for line in (self.text(path) or "").splitlines():
                    line = line.split("#", 1)[0].strip()
                    if line and not line.startswith(";"):
                        persisted.setdefault(_module_name(line.split()[0]), []).append(path)
        return {"loaded": loaded, "builtin": builtin, "sys": sys_modules, "filesystems": filesystems,
                "bridge_netfilter": os.path.exists(self.path("/proc/sys/net/bridge/bridge-nf-call-iptables")),
                "persisted": persisted}

    def sysctl_keys_in(self, path):
        keys = []
        for line in (self.text(path) or "").splitlines():
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            key, sep, _value = line.lstrip("-").partition("=")
            if sep:
                keys.append(key.strip())
        return keys

    def sysctl_values(self, keys):
        out = {}
        for key in keys:
            value = self.text("/proc/sys/" + key.replace(".", "/"))
            out[key] = None if value is None else " ".join(value.split())
        return out

    def describe(self, path, key="", kind="plain"):
        """One path's facts. kind: plain (sha256), secret (fingerprint), token (the password's fingerprint)."""
        real = self.path(path)
        try:
            st = os.lstat(real)
        except OSError:
            return {"exists": False, "path": real}
        info = {"exists": True, "path": real, "mode": mode_string(stat.S_IMODE(st.st_mode)), "size": st.st_size}
        try:
            info["owner"] = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            info["owner"] = str(st.st_uid)
        try:
            info["group"] = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            info["group"] = str(st.st_gid)
        if stat.S_ISLNK(st.st_mode):
            info.update(type="link", link=os.readlink(real))
        elif stat.S_ISDIR(st.st_mode):
            info["type"] = "directory"
        elif stat.S_ISREG(st.st_mode):
            info["type"] = "file"
            try:
                if kind == "plain":
                    info["sha256"] = sha256_file(real)
                elif kind == "secret":
                    info["fingerprint"] = fingerprint(key, self.read(path) or b"")
                else:
                    text = (self.read(path) or b"").decode("utf-8", "replace")
                    info["fingerprint"] = token_fingerprint(key, text)
                    info["format"] = _token_format(text)
            except OSError as exc:
                info["error"] = str(exc)
        else:
            info["type"] = "other"
        return info

    def block(self, path, marker):
        text = self.text(path)
        if text is None:
            return None
        begin, end = marker.replace("{mark}", "BEGIN"), marker.replace("{mark}", "END")
        lines = text.splitlines()
        if begin in lines and end in lines[lines.index(begin):]:
            start = lines.index(begin)
            return "\n".join(lines[start + 1:lines.index(end, start)])
        return None


def iptables(module):
    binary = module.get_bin_path("iptables", opt_dirs=["/usr/sbin", "/sbin"])
    if not binary:
        return {"version": "", "mode": ""}
    rc, out, _err = module.run_command([binary, "--version"])
    match = re.search(r"v([0-9.]+)(?:\s+\((\w+)\))?", out or "")
    if rc != 0 or not match:
        return {"version": "", "mode": ""}
    return {"version": match.group(1), "mode": match.group(2) or "legacy"}


def parse_ip_addresses(text):
    """The IPv4 addresses of ``ip -j -4 addr show``: [{ifname, address, prefix}], loopback left out."""
    import json
    out = []
    try:
        links = json.loads(text or "[]")
    except ValueError:
        return out
    for link in links if isinstance(links, list) else []:
        for info in link.get("addr_info") or []:
            if info.get("family") == "inet" and link.get("ifname") != "lo":
                out.append({"ifname": link.get("ifname", ""), "address": info.get("local", ""),
                            "prefix": int(info.get("prefixlen", 32))})
    return out


def interfaces(module):
    binary = module.get_bin_path("ip", opt_dirs=["/usr/sbin", "/sbin"])
    if not binary:
        return []
    rc, out, _err = module.run_command([binary, "-j", "-4", "addr", "show"])
    return parse_ip_addresses(out) if rc == 0 else []


def units(module, names):
    if not names:
        return {}
    systemctl = module.get_bin_path("systemctl")
    if not systemctl:
        return {n: {"load": "unknown", "error": "systemctl not found"} for n in names}
    props = "Id,LoadState,ActiveState,SubState,UnitFileState,MainPID,NeedDaemonReload"
    rc, out, err = module.run_command([systemctl, "show", "--property=" + props, "--"]
                                      + [n if "." in n else n + ".service" for n in names])
    if rc != 0:  # no running systemd: the roles fail where they need a unit, with systemd's own message
        return {n: {"load": "unknown", "error": (err or out).strip()} for n in names}
    by_id = {}
    for text in out.strip().split("\n\n"):
        values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        by_id[values.get("Id", "")] = values
    out_units = {}
    for name in names:
        values = by_id.get(name if "." in name else name + ".service", {})
        out_units[name] = {"load": values.get("LoadState", ""), "active": values.get("ActiveState", ""),
                           "sub": values.get("SubState", ""), "enabled": values.get("UnitFileState", ""),
                           "main_pid": int(values.get("MainPID") or 0),
                           "need_daemon_reload": values.get("NeedDaemonReload") == "yes"}
    return out_units


def login_users():
    out = {}
    for entry in pwd.getpwall():
        if 1000 <= entry.pw_uid < 60000 and not entry.pw_shell.endswith(("nologin", "false")):
            out[entry.pw_name] = {"home": entry.pw_dir, "uid": entry.pw_uid, "gid": entry.pw_gid}
    return out


def read_state(host, params, users):
    """Everything but the units and iptables (which ask systemctl and iptables)."""
    key = params["fingerprint_key"]
    files = {}
    for path in params["paths"]:
        files[path] = host.describe(path)
    for path in params["secret_paths"]:
        files[path] = host.describe(path, key, "secret")
    for path in params["token_files"]:
        files[path] = host.describe(path, key, "token")
    listings = {}
    for directory in params["listings"]:
        try:
            names = sorted(n for n in os.listdir(host.path(directory))
                           if os.path.isfile(os.path.join(host.path(directory), n)))
        except OSError:
            names = []
        listings[directory] = names
        for name in names:
            files[os.path.join(directory, name)] = host.describe(os.path.join(directory, name))
    blocks = {}
    for name in users:
        for rel in params["user_paths"]:
            files[f"~{name}/{rel}"] = host.describe(f"~{name}/{rel}")
        for rel in params["user_secret_paths"]:
            files[f"~{name}/{rel}"] = host.describe(f"~{name}/{rel}", key, "secret")
        for spec in params["user_blocks"]:
            blocks[f"~{name}/{spec['path']}"] = host.block(f"~{name}/{spec['path']}", spec["marker"])
    contents = {}
    for path in params["contents"]:
        data = host.read(path, _MAX_CONTENT)
        contents[path] = None if data is None else data.decode("utf-8", "replace")
    space = {path: host.space(path) for path in params.get("space") or []}
    sysctl_keys = list(params["sysctls"])
    for path in params["sysctl_files"]:
        sysctl_keys.extend(k for k in host.sysctl_keys_in(path) if k not in sysctl_keys)
    return {"os": host.os_release(), "pi_model": host.pi_model(), "cpu": host.cpu(), "hostname": platform.node(),
            "kernel": {"release": host.release}, "memory_cgroup": host.memory_cgroup(), "swap": host.swap(),
            "kernel_modules": host.kernel_modules(), "sysctls": host.sysctl_values(sysctl_keys),
            "files": files, "contents": contents, "users": users, "blocks": blocks, "listings": listings,
            "space": space}


ARGUMENT_SPEC = {
    "paths": {"type": "list", "elements": "str", "default": []},
    "secret_paths": {"type": "list", "elements": "str", "default": [], "no_log": False},
    "token_files": {"type": "list", "elements": "str", "default": [], "no_log": False},
    "fingerprint_key": {"type": "str", "default": "", "no_log": True},
    "contents": {"type": "list", "elements": "str", "default": []},
    "units": {"type": "list", "elements": "str", "default": []},
    "sysctls": {"type": "list", "elements": "str", "default": []},
    "sysctl_files": {"type": "list", "elements": "str", "default": []},
    "listings": {"type": "list", "elements": "str", "default": []},
    "space": {"type": "list", "elements": "str", "default": []},
    "user_paths": {"type": "list", "elements": "str", "default": []},
    "user_secret_paths": {"type": "list", "elements": "str", "default": [], "no_log": False},
    "user_blocks": {"type": "list", "elements": "dict", "default": [],
                    "options": {"path": {"type": "str", "required": True},
                                "marker": {"type": "str", "required": True}}},
}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    state = read_state(Host(), module.params, login_users())
    module.exit_json(changed=False, iptables=iptables(module), units=units(module, module.params["units"]),
                     interfaces=interfaces(module), **state)


if __name__ == "__main__":
    main()
