# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""K3s's external datastore (``datastore-endpoint``) and private registries
(``registries.yaml``): the rules the preflight applies to k3s_datastore_* and
k3s_registries, the endpoint as messages may show it, and the backup command
for a datastore K3s does not snapshot. Messages never quote a password.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

MASKED = "********"
# What K3s takes (docs/datastore): etcd over http(s) (several, comma-separated), MySQL/MariaDB, PostgreSQL.
ETCD_SCHEMES = ("http", "https")
SQL_SCHEMES = {"mysql": "mysql", "postgres": "postgres", "postgresql": "postgres"}
FILE_VARS = ("k3s_datastore_cafile", "k3s_datastore_certfile", "k3s_datastore_keyfile")
_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def kind(endpoint):
    """'etcd', 'mysql', 'postgres', or '' for an endpoint K3s would not take."""
    scheme = endpoint.split("://", 1)[0].lower() if "://" in endpoint else ""
    return "etcd" if scheme in ETCD_SCHEMES else SQL_SCHEMES.get(scheme, "")


def shown(endpoint):
    """``endpoint`` with the password of any user:password@ in it masked."""
    return re.sub(r"(://[^/@:]*:)[^@]*@", rf"\g<1>{MASKED}@", str(endpoint))


def etcd_urls(endpoint):
    return [u.strip() for u in str(endpoint).split(",") if u.strip()]


def endpoint_problems(endpoint):
    """Why K3s could not use ``endpoint`` (k3s_datastore_endpoint); [] when it can."""
    name = "k3s_datastore_endpoint"
    if endpoint != endpoint.strip():
        return [f"{name} '{shown(endpoint)}' has leading or trailing whitespace: remove it"]
    what = kind(endpoint)
    if not what:
        return [f"{name} '{shown(endpoint)}' is not a datastore K3s takes: an etcd (https://host:2379, several "
                "comma-separated), mysql://user:password@tcp(host:3306)/database or "
                "postgres://user:password@host:5432/database"]
    if what != "etcd":
        rest = endpoint.split("://", 1)[1]
        if what == "mysql" and not re.fullmatch(r"([^@]*@)?tcp\([^)]+\)/\S*|([^@]*@)?unix\([^)]+\)/\S*", rest):
            return [f"{name} '{shown(endpoint)}': a MySQL endpoint reads mysql://user:password@tcp(host:3306)/database"]
        if what == "postgres" and not urllib.parse.urlsplit(endpoint).hostname:
            return [f"{name} '{shown(endpoint)}': a PostgreSQL endpoint reads postgres://user:password@host:5432/database"]
        return []
    p = []
    for url in etcd_urls(endpoint):
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        host = parts.hostname or ""
        ip = None
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        if parts.scheme not in ETCD_SCHEMES or not host or port == -1 or parts.path not in ("", "/") \
                or parts.query or (ip is None and not _HOST_RE.fullmatch(host)):
            p.append(f"{name}: '{shown(url)}' is not an etcd endpoint like https://etcd1.lab:2379 (scheme, host, "
                     "optional port; several are comma-separated)")
        elif ip is not None and ip.version == 6:
            p.append(f"{name}: '{shown(url)}': IPv6 is not supported by pik3s yet; use an IPv4 address or a DNS name")
    schemes = {urllib.parse.urlsplit(u).scheme for u in etcd_urls(endpoint)}
    if len(schemes) > 1:
        p.append(f"{name} mixes http:// and https:// etcd endpoints: K3s uses one TLS setting for all of them")
    return p


def datastore_problems(endpoint, files, exists, server_ha):
    """The rules of k3s_datastore_*: ``files`` maps the three file variables to their values (paths on the
    controller), ``exists`` tells whether a controller path is a readable file, ``server_ha`` is the first
    server's k3s_server_ha."""
    p = []
    given = {k: v for k, v in files.items() if v}
    if not endpoint:
        if given:
            p.append(f"{', '.join(given)} set without k3s_datastore_endpoint: the certificate files are for an "
                     "external datastore; set its endpoint or leave them empty")
        return p
    p.extend(endpoint_problems(endpoint))
    if server_ha:
        p.append("k3s_server_ha starts embedded etcd (cluster-init), and k3s_datastore_endpoint puts the cluster on "
                 "an external datastore: choose one (with an external datastore, any number of servers share it; "
                 "leave k3s_server_ha false)")
    if bool(files.get("k3s_datastore_certfile")) != bool(files.get("k3s_datastore_keyfile")):
        p.append("k3s_datastore_certfile and k3s_datastore_keyfile go together (a client certificate and its key): "
                 "set both or neither")
    if given and kind(endpoint) == "etcd" and all(u.lower().startswith("http://") for u in etcd_urls(endpoint)):
        p.append(f"{', '.join(given)} set but k3s_datastore_endpoint is plain http://: certificates need https://")
    for var, path in given.items():
        if not exists(path):
            p.append(f"{var} {path}: no such readable file on the controller (pik3s copies it to the servers)")
    return p


def backup_hint(endpoint, cafile="", certfile="", keyfile="", when="$(date +%Y%m%d-%H%M%S)"):
    """How to back up a datastore K3s does not snapshot: the command for its own tool."""
    what = kind(endpoint)
    if what == "etcd":
        first = etcd_urls(endpoint)[0]  # etcdctl snapshots one member at a time
        tls = "".join(f" --{flag}={path}" for flag, path in (("cacert", cafile), ("cert", certfile), ("key", keyfile))
                      if path)
        return f"ETCDCTL_API=3 etcdctl --endpoints={first}{tls} snapshot save pik3s-etcd-{when}.db"
    if what == "mysql":
        return "mysqldump --single-transaction <database> > pik3s-mysql-" + when + ".sql"
    if what == "postgres":
        return "pg_dump --format=custom --file=pik3s-postgres-" + when + ".dump <database>"
    return ""


# registries.yaml (docs/installation/private-registry): what K3s reads from it.
REGISTRY_SECTIONS = ("mirrors", "configs")
MIRROR_KEYS = ("endpoint", "rewrite")
CONFIG_KEYS = ("auth", "tls")
AUTH_KEYS = ("username", "password", "auth", "identitytoken")
SECRET_AUTH_KEYS = ("password", "auth", "identitytoken")
TLS_KEYS = ("cert_file", "key_file", "ca_file", "insecure_skip_verify")


def _unknown(where, block, allowed):
    extra = sorted(str(k) for k in block if k not in allowed)
    if extra:
        return [f"k3s_registries: {where} has unknown key(s) {', '.join(extra)} (K3s reads {', '.join(allowed)})"]
    return []


def _url_problem(where, url):
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        shown_url = repr(url) if isinstance(url, str) else "a " + type(url).__name__
        return [f"k3s_registries: {where} {shown_url} is not a registry URL like https://registry.lab:5000"]
    return []


def registries_problems(value):
    """K3s's schema of registries.yaml, on k3s_registries (a mapping). Credentials are never quoted."""
    if not value:
        return []
    p = _unknown("the top level", value, REGISTRY_SECTIONS)
    mirrors, configs = value.get("mirrors"), value.get("configs")
    for section, block in (("mirrors", mirrors), ("configs", configs)):
        if block is not None and not isinstance(block, dict):
            p.append(f"k3s_registries: {section} must be a mapping of registry names")
    if isinstance(mirrors, dict):
        for name, mirror in mirrors.items():
            where = f"mirrors.{name}"
            if not isinstance(mirror, dict):
                p.append(f"k3s_registries: {where} must be a mapping with endpoint (a list of URLs)")
                continue
            p.extend(_unknown(where, mirror, MIRROR_KEYS))
            endpoints = mirror.get("endpoint")
            if not isinstance(endpoints, list) or not endpoints:
                p.append(f"k3s_registries: {where}.endpoint must be a list of registry URLs "
                         "(https://registry.lab:5000)")
            else:
                for i, url in enumerate(endpoints):
                    p.extend(_url_problem(f"{where}.endpoint[{i}]", url))
            rewrite = mirror.get("rewrite")
            if rewrite is not None and (not isinstance(rewrite, dict)
                                        or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in rewrite.items())):
                p.append(f"k3s_registries: {where}.rewrite must map regular expressions to replacements (strings)")
            elif rewrite:
                for pattern in rewrite:
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        p.append(f"k3s_registries: {where}.rewrite {pattern!r} is not a regular expression: {exc}")
    if isinstance(configs, dict):
        for name, config in configs.items():
            where = f"configs.{name}"
            if not isinstance(config, dict):
                p.append(f"k3s_registries: {where} must be a mapping with auth and/or tls")
                continue
            p.extend(_unknown(where, config, CONFIG_KEYS))
            auth, tls = config.get("auth"), config.get("tls")
            if auth is not None:
                if not isinstance(auth, dict):
                    p.append(f"k3s_registries: {where}.auth must be a mapping (username, password, auth, "
                             "identitytoken)")
                else:
                    p.extend(_unknown(f"{where}.auth", auth, AUTH_KEYS))
                    bad = [k for k in AUTH_KEYS if k in auth and not isinstance(auth[k], str)]
                    if bad:
                        p.append(f"k3s_registries: {where}.auth: {', '.join(bad)} must be strings (quote them)")
                    if ("username" in auth) != ("password" in auth):
                        p.append(f"k3s_registries: {where}.auth: username and password go together")
            if tls is not None:
                if not isinstance(tls, dict):
                    p.append(f"k3s_registries: {where}.tls must be a mapping (cert_file, key_file, ca_file, "
                             "insecure_skip_verify)")
                else:
                    p.extend(_unknown(f"{where}.tls", tls, TLS_KEYS))
                    for key in ("cert_file", "key_file", "ca_file"):
                        if key in tls and not (isinstance(tls[key], str) and tls[key].startswith("/")):
                            p.append(f"k3s_registries: {where}.tls.{key} must be an absolute path on the node")
                    if "insecure_skip_verify" in tls and not isinstance(tls["insecure_skip_verify"], bool):
                        p.append(f"k3s_registries: {where}.tls.insecure_skip_verify must be true or false")
                    if ("cert_file" in tls) != ("key_file" in tls):
                        p.append(f"k3s_registries: {where}.tls: cert_file and key_file go together")
    return p
