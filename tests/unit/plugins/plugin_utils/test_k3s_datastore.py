"""The external datastore's and registries.yaml's rules (k3s_datastore), and their filters."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.filter import k3s_datastore as f
from ansible_collections.pik3s.cluster.plugins.plugin_utils import k3s_datastore as d

PASSWORD = "db-pa55word-x"


@pytest.mark.parametrize(("endpoint", "kind"), [
    ("https://etcd1:2379", "etcd"), ("http://10.0.0.5:2379,http://10.0.0.6:2379", "etcd"),
    ("mysql://k3s:pw@tcp(db:3306)/k3s", "mysql"), ("postgres://k3s:pw@db:5432/k3s", "postgres"),
    ("postgresql://db/k3s", "postgres"), ("etcd1:2379", ""), ("sqlite:///x.db", ""), ("", ""),
])
def test_kind(endpoint: str, kind: str) -> None:
    assert d.kind(endpoint) == kind


@pytest.mark.parametrize("endpoint", [
    "https://etcd1.lab:2379", "https://etcd1:2379,https://etcd2:2379,https://10.0.0.7:2379", "http://etcd:2379",
    "https://etcd", "mysql://k3s:pw@tcp(db.lab:3306)/k3s", "mysql://tcp(db:3306)/k3s",
    "postgres://k3s:pw@db.lab:5432/k3s?sslmode=verify-full",
])
def test_good_endpoints(endpoint: str) -> None:
    assert d.endpoint_problems(endpoint) == []


@pytest.mark.parametrize(("endpoint", "message"), [
    ("https://etcd1:2379/v3", "'https://etcd1:2379/v3' is not an etcd endpoint"),
    ("https://etcd1:port", "'https://etcd1:port' is not an etcd endpoint"),
    ("https://[fd00::1]:2379", "IPv6 is not supported by pik3s yet"),
    ("https://etcd1:2379,http://etcd2:2379", "mixes http:// and https:// etcd endpoints"),
    (" https://etcd1:2379", "has leading or trailing whitespace"),
    (f"postgres://k3s:{PASSWORD}@/k3s", "a PostgreSQL endpoint reads"),
])
def test_bad_endpoints(endpoint: str, message: str) -> None:
    problems = d.endpoint_problems(endpoint)
    assert len(problems) == 1 and message in problems[0], problems
    assert PASSWORD not in problems[0]


def test_shown_masks_passwords_only() -> None:
    assert d.shown(f"mysql://k3s:{PASSWORD}@tcp(db:3306)/k3s") == "mysql://k3s:********@tcp(db:3306)/k3s"
    assert d.shown(f"postgres://k3s:{PASSWORD}@db:5432/k3s") == "postgres://k3s:********@db:5432/k3s"
    assert d.shown("https://etcd1:2379,https://etcd2:2379") == "https://etcd1:2379,https://etcd2:2379"
    assert f.k3s_datastore_shown(f"mysql://k3s:{PASSWORD}@tcp(db:3306)/k3s").count("*") == 8
    with pytest.raises(AnsibleFilterError, match="must be a string, not int"):
        f.k3s_datastore_shown(5)


def test_backup_hints() -> None:
    assert d.backup_hint("https://e1:2379,https://e2:2379", "/p/ca.crt", "/p/c.crt", "/p/c.key", when="T") == (
        "ETCDCTL_API=3 etcdctl --endpoints=https://e1:2379 --cacert=/p/ca.crt --cert=/p/c.crt --key=/p/c.key "
        "snapshot save pik3s-etcd-T.db")
    assert d.backup_hint("http://e1:2379", when="T") == "ETCDCTL_API=3 etcdctl --endpoints=http://e1:2379 " \
        "snapshot save pik3s-etcd-T.db"
    assert d.backup_hint("mysql://k3s:pw@tcp(db:3306)/k3s").startswith("mysqldump --single-transaction")
    assert d.backup_hint("postgres://k3s:pw@db/k3s").startswith("pg_dump --format=custom")
    assert PASSWORD not in f.k3s_datastore_backup_hint(f"https://k3s:{PASSWORD}@e1:2379")


def _exists(path: str) -> bool:
    return path.startswith("/ok/")


@pytest.mark.parametrize(("endpoint", "files", "ha", "messages"), [
    ("https://e:2379", {"k3s_datastore_cafile": "/ok/ca", "k3s_datastore_certfile": "/ok/c",
                        "k3s_datastore_keyfile": "/ok/k"}, False, []),
    ("", {}, False, []),
    ("", {"k3s_datastore_keyfile": "/ok/k"}, False, ["k3s_datastore_keyfile set without k3s_datastore_endpoint"]),
    ("https://e:2379", {"k3s_datastore_keyfile": "/ok/k"}, False, ["go together"]),
    ("https://e:2379", {"k3s_datastore_cafile": "/missing/ca"}, False,
     ["k3s_datastore_cafile /missing/ca: no such readable file on the controller"]),
    ("https://e:2379", {}, True, ["k3s_server_ha starts embedded etcd"]),
    ("http://e:2379", {"k3s_datastore_cafile": "/ok/ca"}, False, ["certificates need https://"]),
])
def test_datastore_rules(endpoint: str, files: dict[str, str], ha: bool, messages: list[str]) -> None:
    problems = d.datastore_problems(endpoint, files, _exists, ha)
    assert len(problems) == len(messages), problems
    for problem, message in zip(problems, messages, strict=True):
        assert message in problem


GOOD_REGISTRIES = {
    "mirrors": {"docker.io": {"endpoint": ["https://m.lab:5000", "http://10.0.0.9:5000"],
                              "rewrite": {"^rancher/(.*)": "mirrored/rancher/$1"}},
                "m.lab:5000": {"endpoint": ["https://m.lab:5000"]}},
    "configs": {"m.lab:5000": {"auth": {"username": "pi", "password": PASSWORD},
                               "tls": {"ca_file": "/etc/ssl/m.crt", "insecure_skip_verify": False}},
                "other.lab": {"auth": {"identitytoken": PASSWORD}}},
}


def test_good_registries() -> None:
    assert d.registries_problems(GOOD_REGISTRIES) == []
    assert d.registries_problems({}) == []


@pytest.mark.parametrize(("value", "message"), [
    ({"mirrors": ["docker.io"]}, "mirrors must be a mapping of registry names"),
    ({"mirrors": {"docker.io": "https://m.lab"}}, "mirrors.docker.io must be a mapping with endpoint"),
    ({"mirrors": {"docker.io": {"endpoint": []}}}, "mirrors.docker.io.endpoint must be a list of registry URLs"),
    ({"mirrors": {"docker.io": {"endpoint": ["ftp://m.lab"]}}}, "'ftp://m.lab' is not a registry URL"),
    ({"mirrors": {"docker.io": {"endpoint": ["https://m"], "rewrite": {"(": "x"}}}},
     "mirrors.docker.io.rewrite '(' is not a regular expression"),
    ({"mirrors": {"docker.io": {"endpoint": ["https://m"], "endpoints": []}}},
     "mirrors.docker.io has unknown key(s) endpoints"),
    ({"configs": {"m": {"auth": {"username": "pi"}}}}, "configs.m.auth: username and password go together"),
    ({"configs": {"m": {"auth": {"username": "pi", "password": 1234}}}},
     "configs.m.auth: password must be strings (quote them)"),
    ({"configs": {"m": {"tls": {"cert_file": "/c"}}}}, "configs.m.tls: cert_file and key_file go together"),
    ({"configs": {"m": {"tls": {"insecure_skip_verify": "yes"}}}},
     "configs.m.tls.insecure_skip_verify must be true or false"),
    ({"configs": {"m": "x"}}, "configs.m must be a mapping with auth and/or tls"),
])
def test_bad_registries(value: dict, message: str) -> None:
    problems = d.registries_problems(value)
    assert len(problems) == 1 and message in problems[0], problems
    assert PASSWORD not in problems[0]
