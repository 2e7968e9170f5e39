# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Manifests, Helm charts and add-ons that pik3s puts in K3s's auto-deploy directory.

One place for: the add-on catalogue (pinned charts, where each UI answers), the names the
directory may hold, the rules the preflight applies to ``k3s_server_manifests``,
``k3s_helm_charts``, ``k3s_addons`` and ``k3s_addon_overrides``, and the manifest files
rendered from them. K3s applies every file in /var/lib/rancher/k3s/server/manifests (this
collection writes into its ``pik3s/`` subdirectory) and tracks each as an Addon named after
the file's base name; it never deletes objects when a file goes, so the roles do.
"""

from __future__ import annotations

import base64
import copy
import io
import ipaddress
import os
import re
import tarfile

import yaml

# The opt-in add-ons: pinned, tested charts. The Kubernetes Dashboard project was archived in
# January 2026: 7.14.0 is its last chart (it brings Kong as its proxy). Headlamp (SIG UI) is the
# maintained successor.
CATALOGUE = {
    "dashboard": {
        "chart": "kubernetes-dashboard", "repo": "https://kubernetes.github.io/dashboard/", "version": "7.14.0",
        "namespace": "kubernetes-dashboard", "service": "kubernetes-dashboard-kong-proxy", "port": 443,
        "scheme": "https", "values": {},
        "note": "the Kubernetes Dashboard project was archived in January 2026 (chart 7.14.0 is its last); "
                "headlamp is its maintained successor",
    },
    "headlamp": {
        "chart": "headlamp", "repo": "https://kubernetes-sigs.github.io/headlamp/", "version": "0.43.0",
        "namespace": "headlamp", "service": "headlamp", "port": 80, "scheme": "http", "values": {},
        "note": "",
    },
}
UI_ADDONS = ("dashboard", "headlamp")
# The API's virtual IP: kube-vip as a DaemonSet on the servers, ARP mode with leader election (the
# holder of a Lease answers for the address; another server takes over when it stops). Its image
# is pinned like a chart; k3s_addon_overrides.kube-vip.version replaces the tag.
KUBE_VIP = {"image": "ghcr.io/kube-vip/kube-vip", "version": "v1.2.4", "namespace": "kube-system",
            "name": "kube-vip-ds", "account": "kube-vip"}
ADDON_NAMES = (*UI_ADDONS, "kube-vip")
# The ServiceAccount an add-on's users sign in with, by k3s_addon_access.
ACCESS_ACCOUNTS = {"read-only": "read-only-user", "admin": "admin-user"}
READ_ONLY_ROLE = "pik3s-read-only"
# What the read-only account may read: everything a dashboard shows, never Secrets.
READ_ONLY_RULES = [
    {"apiGroups": [""], "verbs": ["get", "list", "watch"],
     "resources": ["configmaps", "endpoints", "events", "limitranges", "namespaces", "nodes", "persistentvolumeclaims",
                   "persistentvolumes", "pods", "pods/log", "replicationcontrollers", "resourcequotas",
                   "serviceaccounts", "services"]},
    {"apiGroups": ["apps", "batch", "autoscaling", "networking.k8s.io", "policy", "storage.k8s.io",
                   "discovery.k8s.io", "metrics.k8s.io", "helm.cattle.io", "k3s.cattle.io"],
     "resources": ["*"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["rbac.authorization.k8s.io"], "verbs": ["get", "list", "watch"],
     "resources": ["clusterrolebindings", "clusterroles", "rolebindings", "roles"]},
]
OVERRIDE_KEYS = ("version", "repo", "values", "namespace")
MANIFEST_KEYS = ("name", "content", "src", "template")
CHART_KEYS = ("name", "chart", "repo", "version", "namespace", "values", "kind", "create_namespace", "chart_file")
CHART_KINDS = ("HelmChart", "HelmChartConfig")
# Addon names K3s's own manifests take (packaged components): a file of that name would replace them.
PACKAGED_NAMES = (
    "ccm", "coredns", "local-storage", "rolebindings", "runtimes", "traefik", "metrics-server",
    "aggregated-metrics-reader", "auth-delegator", "auth-reader", "metrics-apiservice", "metrics-server-deployment",
    "metrics-server-service", "resource-reader",
)
MANIFESTS_SUBDIR = "pik3s"
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class AddonError(ValueError):
    pass


# --- the preflight's rules ---------------------------------------------------------------------

def name_problem(what, name):
    """Why ``name`` cannot name a file in the auto-deploy directory (its Addon's name), or ''."""
    if not isinstance(name, str) or not name:
        return f"{what} needs a name (a string)"
    if not _SUBDOMAIN.fullmatch(name) or len(name) > 253:
        return (f"{what} name '{name}' is not a valid Kubernetes object name: K3s names the manifest's Addon after "
                "it, and refuses one that is not lower-case letters, digits, '-' and '.', starting and ending "
                "with a letter or digit (no '_', no upper case)")
    if name in PACKAGED_NAMES:
        return (f"{what} name '{name}' is the name of one of K3s's packaged components: the file would replace "
                "it; choose another name")
    return ""


def _url_problem(what, url):
    if not isinstance(url, str) or not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        return f"{what} {url!r} must be an http(s) URL of a Helm chart repository (the directory with index.yaml)"
    return ""


def problems(manifests, charts, addons, overrides, access, airgap_dir=""):
    """Every problem of these settings, each naming the variable, the entry and the fix."""
    p = []
    seen = {}

    def claim(name, where):
        if isinstance(name, str) and name in seen:
            p.append(f"{where} and {seen[name]} both use the name '{name}': each file in K3s's manifests "
                     "directory needs its own name")
        seen.setdefault(name, where)

    def entry(where, value, keys, shape):
        """The checks every entry of a list shares: a mapping, known keys, a valid name of its own."""
        if not isinstance(value, dict):
            p.append(f"{where} must be a mapping {shape}")
            return False
        p.extend(f"{where}: unknown key '{k}' (known: {', '.join(keys)})" for k in value if k not in keys)
        problem = name_problem(where, value.get("name"))
        if problem:
            p.append(problem)
        claim(value.get("name"), where)
        return True

    for i, m in enumerate(manifests or []):
        where = f"k3s_server_manifests[{i}]"
        if not entry(where, m, MANIFEST_KEYS, "with name and one of content, src or template"):
            continue
        given = [k for k in ("content", "src", "template") if m.get(k) not in (None, "")]
        if len(given) != 1:
            p.append(f"{where} ('{m.get('name')}') needs exactly one of content, src or template"
                     + (f" (it has {', '.join(given)})" if given else ""))
    for i, c in enumerate(charts or []):
        where = f"k3s_helm_charts[{i}]"
        if not entry(where, c, CHART_KEYS, "(name, chart, repo, version, namespace, values)"):
            continue
        kind = c.get("kind", "HelmChart")
        if kind not in CHART_KINDS:
            p.append(f"{where} kind {kind!r} must be HelmChart or HelmChartConfig")
        if "values" in c and not isinstance(c["values"], dict):
            p.append(f"{where} values must be a mapping (the chart's values)")
        if c.get("namespace") is not None and (not isinstance(c["namespace"], str)
                                               or not _LABEL.fullmatch(c["namespace"])):
            p.append(f"{where} namespace {c['namespace']!r} is not a valid namespace name (lower-case letters, digits "
                     "and '-', at most 63)")
        if kind == "HelmChartConfig":
            continue  # overrides a packaged chart (traefik): its name is the chart's
        if not c.get("chart") or not isinstance(c.get("chart"), str):
            p.append(f"{where} ('{c.get('name')}') needs chart: the chart's name in its repository")
        if airgap_dir:
            if not c.get("version"):
                p.append(f"{where} ('{c.get('name')}') needs version in air-gap mode: the archive "
                         f"{airgap_dir}/charts/<chart>-<version>.tgz is looked up by it")
            else:
                path = chart_archive_path(airgap_dir, c)
                if not os.path.isfile(path):
                    p.append(f"{where} ('{c.get('name')}'): air-gap mode needs the chart archive {path} on the "
                             "controller (helm pull <repo>/<chart> --version <version>)")
        else:
            problem = _url_problem(f"{where} repo", c.get("repo"))
            if problem:
                p.append(problem)
        if "version" in c and not isinstance(c["version"], str):
            p.append(f"{where} version must be a string (quote it in YAML: version: \"1.2.0\")")
    for i, a in enumerate(addons or []):
        if a not in ADDON_NAMES:
            p.append(f"k3s_addons[{i}] {a!r} is not a pik3s add-on: choose from {', '.join(sorted(ADDON_NAMES))}")
        else:
            claim(a, f"k3s_addons[{i}]")
    for name, o in (overrides or {}).items():
        if name not in ADDON_NAMES:
            p.append(f"k3s_addon_overrides has '{name}', which is not a pik3s add-on "
                     f"({', '.join(sorted(ADDON_NAMES))})")
            continue
        if not isinstance(o, dict):
            p.append(f"k3s_addon_overrides.{name} must be a mapping ({', '.join(OVERRIDE_KEYS)})")
            continue
        keys = ("version",) if name == "kube-vip" else OVERRIDE_KEYS
        p.extend(f"k3s_addon_overrides.{name}: unknown key '{k}' (known: {', '.join(keys)})"
                 for k in o if k not in keys)
        if "repo" in o:
            problem = _url_problem(f"k3s_addon_overrides.{name}.repo", o["repo"])
            if problem:
                p.append(problem)
        if "values" in o and not isinstance(o["values"], dict):
            p.append(f"k3s_addon_overrides.{name}.values must be a mapping (the chart's values)")
        if "namespace" in o and (not isinstance(o["namespace"], str) or not _LABEL.fullmatch(o["namespace"])):
            p.append(f"k3s_addon_overrides.{name}.namespace {o['namespace']!r} is not a valid namespace name")
    if access not in ACCESS_ACCOUNTS:
        p.append(f"k3s_addon_access {access!r} must be read-only (the default: a ServiceAccount that reads all but "
                 "Secrets) or admin (bound to cluster-admin)")
    return p


def vip_problems(vip, interface, addons, host_addresses, networks):
    """The API virtual IP's rules. ``host_addresses``: every cluster host's addresses from the inventory;
    ``networks``: per server, its IPv4 addresses as read from it (None where not read, offline). The VIP
    as a /32 on a server is kube-vip holding it (a re-run), not a conflict."""
    p = []
    wanted = "kube-vip" in (addons or [])
    if wanted and not vip:
        return ["k3s_addons has kube-vip but k3s_api_vip is empty: set the virtual IP the API should answer at "
                "(a free address in the servers' network)"]
    if not vip:
        return []
    if not wanted:
        p.append(f"k3s_api_vip is {vip} but kube-vip is not in k3s_addons: nothing would answer at that address; "
                 "add kube-vip to k3s_addons (or use k3s_api_endpoint for an address you provide)")
    try:
        address = ipaddress.ip_address(str(vip))
    except ValueError:
        return [*p, f"k3s_api_vip {vip!r} is not an IP address: a virtual IP is an IPv4 address"]
    if address.version != 4:
        return [*p, f"k3s_api_vip {vip}: kube-vip's ARP mode takes an IPv4 address"]
    for host, addrs in host_addresses.items():
        if str(address) in (str(a) for a in addrs):
            p.append(f"k3s_api_vip {vip} is the address of {host}: a virtual IP must be an address no host has")
    for host, nets in networks.items():
        if nets is None:
            continue  # not read (offline): the run checks it on the hosts
        for net in nets:
            if net.get("address") == str(address) and net.get("prefix") == 32:
                continue  # kube-vip holds it on this server (it adds the address as a /32)
            if net.get("address") == str(address):
                p.append(f"k3s_api_vip {vip} is already an address of {host} ({net.get('ifname')}): a virtual IP "
                         "must be an address no host has")
        on = [n for n in nets if n.get("ifname") == interface]
        if not on:
            names = ", ".join(sorted({n.get("ifname", "") for n in nets})) or "no IPv4 interface"
            p.append(f"{host} has no IPv4 address on {interface} (k3s_api_vip_interface); it has {names}")
            continue
        subnets = [ipaddress.ip_network(f"{n['address']}/{n['prefix']}", strict=False) for n in on]
        if not any(address in net for net in subnets):
            p.append(f"k3s_api_vip {vip} is outside {host}'s network on {interface} "
                     f"({', '.join(str(n) for n in subnets)}): kube-vip answers ARP for it only inside that network")
    return p


# --- rendering ---------------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def plain(value):
    """``value`` as plain Python data (Ansible hands filters its own str, dict and list subclasses,
    which a YAML dumper does not know)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def dump(docs):
    """Documents as one YAML stream (block style, multi-line strings as | blocks, keys in order)."""
    texts = [yaml.dump(plain(d), Dumper=_Dumper, default_flow_style=False, sort_keys=False, width=10_000)
             for d in docs]
    return "---\n".join(texts)


def addon_spec(name, overrides=None):
    """The catalogue entry of an add-on with the operator's overrides applied."""
    spec = copy.deepcopy(CATALOGUE[name])
    for key, value in ((overrides or {}).get(name) or {}).items():
        spec[key] = value
    return spec


def chart_archive_path(airgap_dir, chart):
    return os.path.join(airgap_dir, "charts", chart.get("chart_file") or f"{chart['chart']}-{chart['version']}.tgz")


def read_chart_archive(path):
    """(base64 of the archive, its Chart.yaml, the images its values name) for a chart archive."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            top = next((n.split("/")[0] for n in members if n.count("/") == 1 and n.endswith("/Chart.yaml")), None)
            if top is None:
                raise AddonError(f"{path}: no <chart>/Chart.yaml in the archive: is it a Helm chart (helm pull)?")
            meta = yaml.safe_load(tar.extractfile(members[f"{top}/Chart.yaml"]).read()) or {}
            values_file = members.get(f"{top}/values.yaml")
            values = yaml.safe_load(tar.extractfile(values_file).read()) if values_file else {}
    except (OSError, tarfile.TarError, yaml.YAMLError) as exc:
        raise AddonError(f"{path}: not a readable Helm chart archive: {exc}") from None
    return base64.b64encode(data).decode(), meta, images_in(values or {}, str(meta.get("appVersion") or ""))


def images_in(values, app_version=""):
    """Container images a chart's values name, by the common convention (a mapping with repository,
    optional registry and tag; a missing tag is the chart's appVersion)."""
    found = []

    def walk(v):
        if isinstance(v, dict):
            repo = v.get("repository")
            if isinstance(repo, str) and repo:
                registry = v.get("registry")
                ref = f"{registry}/{repo}" if isinstance(registry, str) and registry else repo
                tag = v.get("tag") or app_version
                found.append(f"{ref}:{tag}" if tag else ref)
            for sub in v.values():
                walk(sub)
        elif isinstance(v, list):
            for sub in v:
                walk(sub)

    walk(values)
    return sorted(set(found))


def helm_chart_doc(name, chart, repo, version, namespace, values, create_namespace=True, kind="HelmChart",
                   archive=None):
    """A HelmChart (or HelmChartConfig) in kube-system; ``archive`` (base64) goes in as chartContent."""
    spec = {}
    if kind == "HelmChart":
        spec.update({"chart": chart, "targetNamespace": namespace or name, "createNamespace": bool(create_namespace)})
        if archive:
            spec["chartContent"] = archive
        else:
            spec["repo"] = repo
        if version:
            spec["version"] = str(version)
    if values:
        spec["valuesContent"] = yaml.safe_dump(plain(values), default_flow_style=False, sort_keys=True)
    return {"apiVersion": "helm.cattle.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": "kube-system", "labels": {"app.kubernetes.io/managed-by": "pik3s"}},
            "spec": spec}


def access_docs(addon, namespace, access):
    """The ServiceAccount an add-on's users sign in with, and its binding."""
    account = ACCESS_ACCOUNTS[access]
    docs = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}}]
    if access == "read-only":
        docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                     "metadata": {"name": READ_ONLY_ROLE}, "rules": READ_ONLY_RULES})
    role = "cluster-admin" if access == "admin" else READ_ONLY_ROLE
    docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                 "metadata": {"name": f"pik3s-{addon}-{account}"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                 "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]})
    return docs


def files(charts, addons, overrides, access, airgap_dir="", vip=None):
    """The manifest files for the charts and add-ons: [{name, content}], plus the images the air-gapped
    charts need ({file name: [image, ...]}). ``vip``: {address, interface, port} for kube-vip."""
    out, images = [], {}
    if "kube-vip" in (addons or []):
        vip = vip or {}
        entry, image = kube_vip_file(vip.get("address"), vip.get("interface") or "eth0", vip.get("port") or 6443,
                                     overrides)
        out.append(entry)
        if airgap_dir:
            images["kube-vip"] = [image]
    for c in charts or []:
        kind = c.get("kind", "HelmChart")
        archive = None
        if airgap_dir and kind == "HelmChart":
            archive, _meta, images[c["name"]] = read_chart_archive(chart_archive_path(airgap_dir, c))
        doc = helm_chart_doc(c["name"], c.get("chart"), c.get("repo"), c.get("version"), c.get("namespace"),
                             c.get("values") or {}, c.get("create_namespace", True), kind, archive)
        out.append({"name": c["name"], "content": dump([doc])})
    for name in addons or []:
        if name == "kube-vip":
            continue  # rendered by kube_vip_files (it needs the address and the interface)
        spec = addon_spec(name, overrides)
        ns = spec["namespace"]
        archive = None
        if airgap_dir:
            chart = {"chart": spec["chart"], "version": spec["version"]}
            archive, _meta, images[name] = read_chart_archive(chart_archive_path(airgap_dir, chart))
        docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                helm_chart_doc(name, spec["chart"], spec["repo"], spec["version"], ns, spec["values"], True,
                               archive=archive)]
        docs.extend(access_docs(name, ns, access))
        out.append({"name": name, "content": dump(docs)})
    return out, images


def kube_vip_docs(address, interface, port, version):
    """kube-vip as a DaemonSet on the servers (K3s's way: the servers start without the VIP, which
    every server's certificate already names), ARP mode, leader election on a Lease."""
    labels = {"app.kubernetes.io/name": "kube-vip", "app.kubernetes.io/managed-by": "pik3s"}
    env = {"vip_arp": "true", "port": str(port), "vip_interface": interface, "vip_subnet": "32",
           "cp_enable": "true", "cp_namespace": "kube-system", "vip_leaderelection": "true",
           "vip_leasename": "plndr-cp-lock", "vip_leaseduration": "5", "vip_renewdeadline": "3",
           "vip_retryperiod": "1", "svc_enable": "false", "address": address}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": KUBE_VIP["account"], "namespace": "kube-system", "labels": labels}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:kube-vip-role", "labels": labels},
         "rules": [{"apiGroups": [""], "resources": ["services/status"], "verbs": ["update"]},
                   {"apiGroups": [""], "resources": ["services", "endpoints"],
                    "verbs": ["list", "get", "watch", "update"]},
                   {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "get", "watch", "update", "patch"]},
                   {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                    "verbs": ["list", "get", "watch", "update", "create"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["list", "get", "watch", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:kube-vip-binding", "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:kube-vip-role"},
         "subjects": [{"kind": "ServiceAccount", "name": KUBE_VIP["account"], "namespace": "kube-system"}]},
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"name": KUBE_VIP["name"], "namespace": "kube-system", "labels": labels},
         "spec": {
             "selector": {"matchLabels": {"app.kubernetes.io/name": "kube-vip"}},
             "template": {
                 "metadata": {"labels": labels},
                 "spec": {
                     "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                         "nodeSelectorTerms": [{"matchExpressions": [
                             {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}]}}},
                     "tolerations": [{"effect": "NoSchedule", "operator": "Exists"},
                                     {"effect": "NoExecute", "operator": "Exists"}],
                     "hostNetwork": True, "serviceAccountName": KUBE_VIP["account"],
                     "containers": [{
                         "name": "kube-vip", "image": f"{KUBE_VIP['image']}:{version}", "args": ["manager"],
                         "imagePullPolicy": "IfNotPresent",
                         "env": [{"name": k, "value": v} for k, v in env.items()],
                         "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}}]}}}},
    ]


def kube_vip_file(address, interface, port, overrides=None):
    """The kube-vip manifest file ({name, content}) and the image it runs."""
    version = ((overrides or {}).get("kube-vip") or {}).get("version") or KUBE_VIP["version"]
    return ({"name": "kube-vip", "content": dump(kube_vip_docs(address, interface, port, version))},
            f"{KUBE_VIP['image']}:{version}")


def manifest_content(manifest, rendered=None):
    """The text of one k3s_server_manifests entry (``rendered``: src or template already read)."""
    if rendered is not None:
        return rendered if rendered.endswith("\n") else rendered + "\n"
    content = manifest.get("content")
    if isinstance(content, str):
        return content if content.endswith("\n") else content + "\n"
    if isinstance(content, list):
        return dump(content)
    return dump([content])


def ui_access(name, overrides=None, access="read-only"):
    """Where a UI add-on answers and who signs in: for pik3s dashboard."""
    spec = addon_spec(name, overrides)
    return {"addon": name, "namespace": spec["namespace"], "service": spec["service"], "port": spec["port"],
            "scheme": spec["scheme"], "account": ACCESS_ACCOUNTS[access], "note": spec.get("note", "")}
