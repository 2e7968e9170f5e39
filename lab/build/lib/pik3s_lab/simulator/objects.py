"""Kubernetes objects beside nodes: kinds, names, the object store, RBAC and tokens."""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import hashlib
import hmac
import json
import re
import time
from typing import TYPE_CHECKING, Any

from .common import SIM_NAME
from .nodes import _age, iso, node_roles, node_status, spec, uuid_for

if TYPE_CHECKING:
    from .server import Server


# Kubernetes objects beside nodes: what auto-deployed manifests, HelmCharts
# and a dashboard's access need. Stored in the datastore (replicated like
# everything else), served under the API's real paths with discovery, RBAC
# for service-account tokens, and K3s's deploy controller reading the
# manifests directory. No object runs: a Deployment is a record, a HelmChart
# becomes a helm-install Job and a Helm release record, never pods.
class ApiStatus(Exception):
    """An API error as the API server returns it (a metav1.Status)."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                "reason": self.reason, "details": self.details, "code": self.code}

    @staticmethod
    def from_body(body: str) -> ApiStatus | None:
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        if not isinstance(doc, dict) or doc.get("kind") != "Status" or not doc.get("code"):
            return None
        return ApiStatus(int(doc["code"]), doc.get("reason", ""), doc.get("message", ""), doc.get("details"))


def _protobuf_fields(data: bytes) -> dict[int, list[Any]]:
    """The fields of one protobuf message: number -> values (varints as ints, the rest as bytes)."""
    fields: dict[int, list[Any]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            fields.setdefault(number, []).append(varint())
        elif wire == 2:
            length = varint()
            fields.setdefault(number, []).append(data[i:i + length])
            i += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            fields.setdefault(number, []).append(data[i:i + size])
            i += size
        else:
            raise ValueError(f"protobuf wire type {wire} is not read")
    return fields


def protobuf_body(data: bytes) -> dict[str, Any]:
    """A request body in Kubernetes' protobuf encoding (the k8s\\0 envelope). The simulator reads the
    one message clients send only that way (TokenRequest, from kubectl create token and client-go); any
    other is refused with the API server's 415, so clients that can fall back to JSON do."""
    unsupported = ApiStatus(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                            "accepted media types include: application/json, application/merge-patch+json, "
                            f"application/strategic-merge-patch+json ({SIM_NAME}: protobuf is read for "
                            "TokenRequest only)")
    if not data.startswith(b"k8s\x00"):
        raise unsupported
    try:
        unknown = _protobuf_fields(data[4:])
        type_meta = _protobuf_fields(unknown[1][0])
        api_version, kind = type_meta[1][0].decode(), type_meta[2][0].decode()
        if (api_version, kind) != ("authentication.k8s.io/v1", "TokenRequest"):
            raise unsupported
        message = _protobuf_fields(unknown[2][0]) if 2 in unknown else {}
        spec = _protobuf_fields(message[2][0]) if 2 in message else {}
    except (IndexError, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ApiStatus(400, "BadRequest", f"the body of the request could not be decoded: {exc}") from exc
    out: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "spec": {}}
    if 1 in spec:
        out["spec"]["audiences"] = [a.decode() for a in spec[1]]
    if 4 in spec:
        out["spec"]["expirationSeconds"] = spec[4][0]
    return out


class Kind:
    """One resource type: kind, API group and version, plural, scope, short names."""

    def __init__(self, kind: str, group: str, version: str, plural: str, namespaced: bool,
                 short: tuple[str, ...] = (), verbs: tuple[str, ...] = ("create", "delete", "get", "list",
                                                                          "patch", "update")):
        self.kind, self.group, self.version, self.plural = kind, group, version, plural
        self.namespaced, self.short, self.verbs = namespaced, short, verbs

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def res(self) -> str:
        """Where the datastore keeps its objects."""
        return f"{self.group}/{self.plural}"

    @property
    def qualified(self) -> str:
        """serviceaccount, clusterrolebinding.rbac.authorization.k8s.io: as kubectl names it in messages."""
        return self.kind.lower() + (f".{self.group}" if self.group else "")

    def prefix(self, namespace: str | None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{base}/namespaces/{namespace}/{self.plural}" if self.namespaced and namespace else \
            f"{base}/{self.plural}"

    def names(self) -> set[str]:
        return {self.plural, self.kind.lower(), *self.short, f"{self.plural}.{self.group}",
                f"{self.kind.lower()}.{self.group}"} if self.group else {self.plural, self.kind.lower(), *self.short}


NODE_KIND = Kind("Node", "", "v1", "nodes", False, ("no",), ("delete", "get", "list", "patch"))
BUILTIN_KINDS = [
    NODE_KIND,
    Kind("Namespace", "", "v1", "namespaces", False, ("ns",)),
    Kind("ServiceAccount", "", "v1", "serviceaccounts", True, ("sa",)),
    Kind("ConfigMap", "", "v1", "configmaps", True, ("cm",)),
    Kind("Secret", "", "v1", "secrets", True),
    Kind("Service", "", "v1", "services", True, ("svc",)),
    Kind("ClusterRole", "rbac.authorization.k8s.io", "v1", "clusterroles", False),
    Kind("ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", "clusterrolebindings", False),
    Kind("Role", "rbac.authorization.k8s.io", "v1", "roles", True),
    Kind("RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings", True),
    Kind("Deployment", "apps", "v1", "deployments", True, ("deploy",)),
    Kind("DaemonSet", "apps", "v1", "daemonsets", True, ("ds",)),
    Kind("StatefulSet", "apps", "v1", "statefulsets", True, ("sts",)),
    Kind("Job", "batch", "v1", "jobs", True),
    Kind("Lease", "coordination.k8s.io", "v1", "leases", True),
    Kind("Ingress", "networking.k8s.io", "v1", "ingresses", True, ("ing",)),
    Kind("CustomResourceDefinition", "apiextensions.k8s.io", "v1", "customresourcedefinitions", False,
         ("crd", "crds")),
    # The custom resources K3s itself defines.
    Kind("Addon", "k3s.cattle.io", "v1", "addons", True),
    Kind("HelmChart", "helm.cattle.io", "v1", "helmcharts", True),
    Kind("HelmChartConfig", "helm.cattle.io", "v1", "helmchartconfigs", True),
]
KINDS = {k.kind: k for k in BUILTIN_KINDS}
SUBRESOURCES = {("", "serviceaccounts"): [("token", "TokenRequest", ("create",))]}
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# ClusterRoles every cluster has (the API server's bootstrap policy), as far as the simulator needs them.
BUILTIN_CLUSTER_ROLES = {
    "cluster-admin": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                      {"nonResourceURLs": ["*"], "verbs": ["*"]}],
    "view": [{"apiGroups": [""], "verbs": ["get", "list", "watch"],
              "resources": ["configmaps", "endpoints", "persistentvolumeclaims", "pods", "replicationcontrollers",
                            "serviceaccounts", "services", "namespaces", "events", "limitranges",
                            "resourcequotas"]},
             {"apiGroups": ["apps"], "verbs": ["get", "list", "watch"],
              "resources": ["daemonsets", "deployments", "replicasets", "statefulsets"]},
             {"apiGroups": ["batch"], "verbs": ["get", "list", "watch"], "resources": ["cronjobs", "jobs"]},
             {"apiGroups": ["networking.k8s.io"], "verbs": ["get", "list", "watch"],
              "resources": ["ingresses", "networkpolicies"]}],
}
# What any authenticated user may read (system:discovery, system:public-info-viewer).
DISCOVERY_PATHS = ("/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi")
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
K3S_OWNER_ANNOTATIONS = ("objectset.rio.cattle.io/owner-gvk", "objectset.rio.cattle.io/owner-name",
                         "objectset.rio.cattle.io/owner-namespace")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


# Kinds whose names are only path segments (RBAC: system:kube-vip-role is a valid ClusterRole name).
PATH_SEGMENT_NAMES = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def name_problem(name: Any, label: bool = False, path_segment: bool = False) -> str | None:
    """The API server's message for an invalid object name, or None."""
    text = str(name)
    if path_segment:
        if text in (".", ".."):
            return f"may not be '{text}'"
        bad = next((c for c in ("/", "%") if c in text), None)
        return f"may not contain '{bad}'" if bad else None
    if label:
        if not _DNS_LABEL.fullmatch(text) or len(text) > 63:
            return ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
                    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
        return None
    if not _DNS_SUBDOMAIN.fullmatch(text) or len(text) > 253:
        return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    return None


def object_key(kind: Kind, namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if kind.namespaced else name


def crd_kinds(crds: list[dict[str, Any]]) -> list[Kind]:
    out = []
    for crd in crds:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        for v in spec.get("versions") or []:
            if v.get("served", True):
                out.append(Kind(names.get("kind", ""), spec.get("group", ""), v.get("name", ""),
                                names.get("plural", ""), spec.get("scope", "Namespaced") == "Namespaced",
                                tuple(names.get("shortNames") or ())))
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch. Strategic merge patches are applied as merge patches (their
    $-directives dropped): the simulator keeps no per-field merge keys."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Objects:
    """The objects of one server's copy of the datastore, and the rules the API server applies to them."""

    def __init__(self, srv: Server):
        self.srv = srv

    # types ------------------------------------------------------------------
    def kinds(self) -> list[Kind]:
        crds = list(self._stored(KINDS["CustomResourceDefinition"]).values())  # CustomResourceDefinition
        return BUILTIN_KINDS + crd_kinds(crds)

    def by_path(self, group: str, version: str, plural: str) -> Kind:
        for k in self.kinds():
            if (k.group, k.version, k.plural) == (group, version, plural):
                return k
        raise ApiStatus(404, "NotFound", "the server could not find the requested resource")

    def by_gvk(self, api_version: str, kind: str) -> Kind:
        for k in self.kinds():
            if (k.api_version, k.kind) == (api_version, kind):
                return k
        raise ApiStatus(404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"')

    # reads ------------------------------------------------------------------
    def _stored(self, kind: Kind) -> dict[str, dict[str, Any]]:
        stored: dict[str, dict[str, Any]] = self.srv.state.data.get("objects", {}).get(kind.res, {})
        return stored

    def _builtins(self, kind: Kind) -> dict[str, dict[str, Any]]:
        created = iso(self.srv.state.data.get("created", 0))
        if kind.plural == "namespaces" and not kind.group:
            return {n: {"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": n, "uid": str(uuid_for(f"ns/{n}")), "creationTimestamp": created, "resourceVersion": "1",
                "labels": {"kubernetes.io/metadata.name": n}}, "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"}} for n in PROTECTED_NAMESPACES}
        if kind.plural == "clusterroles" and kind.group == "rbac.authorization.k8s.io":
            return {n: {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {
                "name": n, "uid": str(uuid_for(f"clusterrole/{n}")), "creationTimestamp": created,
                "resourceVersion": "1", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                "rules": rules} for n, rules in BUILTIN_CLUSTER_ROLES.items()}
        return {}

    def _all(self, kind: Kind) -> dict[str, dict[str, Any]]:
        with self.srv.state.lock:
            return {**self._builtins(kind), **copy.deepcopy(self._stored(kind))}

    def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._all(kind).get(object_key(kind, namespace, name))
        if obj is None:
            raise ApiStatus(404, "NotFound", f'{kind.plural}{"." + kind.group if kind.group else ""} "{name}" '
                            "not found", {"name": name, "group": kind.group, "kind": kind.plural})
        return obj

    def items(self, kind: Kind, namespace: str | None = None) -> list[dict[str, Any]]:
        items = [o for _k, o in sorted(self._all(kind).items())]
        if kind.namespaced and namespace:
            items = [o for o in items if o["metadata"].get("namespace") == namespace]
        return items

    def namespace_exists(self, name: str) -> bool:
        return name in PROTECTED_NAMESPACES or name in self._stored(KINDS["Namespace"])

    # writes (through the datastore's leader) -------------------------------
    def validate(self, kind: Kind, namespace: str | None, obj: Any, name: str | None = None) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise ApiStatus(400, "BadRequest", "the object provided is not a JSON object")
        if obj.get("kind", kind.kind) != kind.kind or obj.get("apiVersion", kind.api_version) != kind.api_version:
            raise ApiStatus(400, "BadRequest", f"the API version in the data ({obj.get('apiVersion')}) does not "
                            f"match the expected API version ({kind.api_version})"
                            if obj.get("apiVersion", kind.api_version) != kind.api_version else
                            f"the kind in the data ({obj.get('kind')}) does not match the expected kind "
                            f"({kind.kind})")
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            raise ApiStatus(422, "Invalid", f"{kind.kind} \"\" is invalid: metadata.name: Required value: "
                            "name or generateName is required")
        if name is not None and meta["name"] != name:
            raise ApiStatus(400, "BadRequest", f"the name of the object ({meta['name']}) does not match the name "
                            f"on the URL ({name})")
        why = name_problem(meta["name"], label=kind.kind in ("Namespace", "Service"),
                           path_segment=kind.kind in PATH_SEGMENT_NAMES)
        if why:
            raise ApiStatus(422, "Invalid", f'{kind.kind} "{meta["name"]}" is invalid: metadata.name: Invalid '
                            f'value: "{meta["name"]}": {why}')
        if kind.namespaced:
            ns = meta.get("namespace") or namespace or "default"
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiStatus(400, "BadRequest", "the namespace of the provided object does not match the "
                                "namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        if kind.kind == "Secret" and isinstance(obj.get("stringData"), dict):
            data = dict(obj.get("data") or {})
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
        return obj

    def write(self, kind: Kind, obj: dict[str, Any], mode: str) -> dict[str, Any]:
        """mode: create (409 if it exists), update (404 if it does not) or put (either)."""
        meta = obj["metadata"]
        key = object_key(kind, meta.get("namespace"), meta["name"])
        if key in self._builtins(kind) and kind.kind != "Namespace":
            raise ApiStatus(403, "Forbidden", f'{kind.plural} "{meta["name"]}" is forbidden: {SIM_NAME}: '
                            "the bootstrap policy's objects are built in")
        self.srv.state.write({"op": "object_put", "res": kind.res, "key": key, "obj": obj, "mode": mode,
                              "kind": kind.kind, "plural": kind.plural, "group": kind.group,
                              "namespaced": kind.namespaced, "now": iso(time.time())})
        return self.get(kind, meta.get("namespace"), meta["name"])

    def delete(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.get(kind, namespace, name)
        if kind.kind == "Namespace" and name in PROTECTED_NAMESPACES:
            raise ApiStatus(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        if object_key(kind, namespace, name) in self._builtins(kind):
            raise ApiStatus(403, "Forbidden", f'{kind.plural} "{name}" is forbidden: {SIM_NAME}: '
                            "the bootstrap policy's objects are built in")
        self.srv.state.write({"op": "object_delete", "res": kind.res, "key": object_key(kind, namespace, name),
                              "kind": kind.kind, "plural": kind.plural, "group": kind.group, "name": name,
                              "now": iso(time.time())})
        return obj

    def purge_terminating(self) -> None:
        """The namespace controller: a namespace Terminating for a moment (as the real controller takes
        one to delete its content) is emptied, then removed."""
        kind = KINDS["Namespace"]
        for ns in list(self._stored(kind).values()):
            name = ns["metadata"]["name"]
            since = ns["metadata"].get("deletionTimestamp")
            if since and time.time() - _dt.datetime.strptime(since, "%Y-%m-%dT%H:%M:%S%z").timestamp() >= 2:
                self.srv.state.write({"op": "object_delete", "res": kind.res, "key": name, "kind": "Namespace",
                                      "plural": "namespaces", "group": "", "name": name, "purge": True})

    def apply(self, kind: Kind, obj: dict[str, Any]) -> str:
        """Create or replace as a deployer's apply does: 'created', 'configured' or 'unchanged'."""
        meta = obj["metadata"]
        try:
            current = self.get(kind, meta.get("namespace"), meta["name"])
        except ApiStatus:
            self.write(kind, obj, "create")
            return "created"
        if _content(current) == _content(obj):
            return "unchanged"
        merged = dict(obj)
        if "status" in current and "status" not in obj:
            merged["status"] = current["status"]
        self.write(kind, merged, "update")
        return "configured"

    # service-account tokens -------------------------------------------------
    def _signing_key(self) -> bytes:
        # The simulator signs with HMAC-SHA256 under a key every server derives from the cluster's CA
        # key (K3s signs RS256 with its service-account key, which is bootstrap data in the same way).
        return hashlib.sha256(b"pik3s-sim-service-account:" + (self.srv.tls / "server-ca.key").read_bytes()).digest()

    def issue_token(self, namespace: str, name: str, seconds: int, audiences: list[str]) -> dict[str, Any]:
        sa = self.get(KINDS["ServiceAccount"], namespace, name)
        now = int(time.time())
        seconds = max(600, min(int(seconds or 3600), 48 * 3600))  # the API server's bounds (10 min .. 48 h)
        claims = {"aud": audiences or [SA_ISSUER, "k3s"], "exp": now + seconds, "iat": now, "nbf": now,
                  "iss": SA_ISSUER, "sub": f"system:serviceaccount:{namespace}:{name}",
                  "kubernetes.io": {"namespace": namespace,
                                    "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]}}}
        head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "pik3s-sim"}).encode())
        body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        sig = _b64url(hmac.new(self._signing_key(), f"{head}.{body}".encode(), hashlib.sha256).digest())
        return {"token": f"{head}.{body}.{sig}", "expirationTimestamp": iso(now + seconds)}

    def token_identity(self, token: str) -> tuple[str, list[str]] | None:
        """(user, groups) of a valid service-account token, or None."""
        try:
            head, body, sig = token.split(".")
            want = _b64url(hmac.new(self._signing_key(), f"{head}.{body}".encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(want, sig):
                return None
            claims = json.loads(_unb64url(body))
            if not claims["nbf"] <= time.time() < claims["exp"]:
                return None
            info = claims["kubernetes.io"]
            sa = self.get(KINDS["ServiceAccount"], info["namespace"], info["serviceaccount"]["name"])
        except (ValueError, KeyError, TypeError, ApiStatus):
            return None
        if sa["metadata"]["uid"] != info["serviceaccount"]["uid"]:
            return None  # the account was deleted and made again: its old tokens end with it
        ns = info["namespace"]
        return (claims["sub"], ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"])

    # authorization ----------------------------------------------------------
    def allowed(self, user: str, groups: list[str], verb: str, group: str, resource: str, namespace: str | None,
                name: str | None, path: str) -> bool:
        def subject_matches(s: dict[str, Any], binding_ns: str | None) -> bool:
            if s.get("kind") == "ServiceAccount":
                return user == f"system:serviceaccount:{s.get('namespace') or binding_ns}:{s.get('name')}"
            if s.get("kind") == "User":
                return user == s.get("name")
            return s.get("kind") == "Group" and s.get("name") in groups

        def rules_of(ref: dict[str, Any], ns: str | None) -> list[dict[str, Any]]:
            kinds = {"ClusterRole": (KINDS["ClusterRole"], None), "Role": (KINDS["Role"], ns)}
            if ref.get("kind") not in kinds:
                return []
            kind, where = kinds[ref["kind"]]
            try:
                return self.get(kind, where, ref.get("name", "")).get("rules") or []
            except ApiStatus:
                return []

        def rule_matches(rule: dict[str, Any]) -> bool:
            verbs = rule.get("verbs") or []
            if "*" not in verbs and verb not in verbs:
                return False
            if not resource:
                urls = rule.get("nonResourceURLs") or []
                return any(u == path or u == "*" or (u.endswith("*") and path.startswith(u[:-1])) for u in urls)
            if "*" not in (rule.get("apiGroups") or []) and group not in (rule.get("apiGroups") or []):
                return False
            if "*" not in (rule.get("resources") or []) and resource not in (rule.get("resources") or []):
                return False
            return not rule.get("resourceNames") or name in rule["resourceNames"]

        if not resource and any(path == d or path.startswith(d + "/") for d in DISCOVERY_PATHS):
            return True
        crb, rb = KINDS["ClusterRoleBinding"], KINDS["RoleBinding"]
        for b in self.items(crb):
            if any(subject_matches(s, None) for s in b.get("subjects") or []) and \
                    any(rule_matches(r) for r in rules_of(b.get("roleRef") or {}, None)):
                return True
        if namespace:
            for b in self.items(rb, namespace):
                if any(subject_matches(s, namespace) for s in b.get("subjects") or []) and \
                        any(rule_matches(r) for r in rules_of(b.get("roleRef") or {}, namespace)):
                    return True
        return False


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """What an apply compares: the object without the fields the server sets."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items()
            if k not in ("uid", "creationTimestamp", "resourceVersion", "generation", "managedFields")}
    out["metadata"] = meta
    return out


def apply_lease_op(state: dict[str, Any], op: dict[str, Any]) -> None:
    """Take or renew a coordination.k8s.io Lease (leader election, as client-go does it): granted when it
    is free, expired, or already this holder's; otherwise 409. ``release`` gives it up."""
    store = state.setdefault("objects", {}).setdefault("coordination.k8s.io/leases", {})
    key = f"{op['namespace']}/{op['name']}"
    current = store.get(key)
    spec = (current or {}).get("spec") or {}
    now = float(op["now"])
    holder = spec.get("holderIdentity")
    expired = now - float(spec.get("pik3sRenewEpoch", 0)) > float(spec.get("leaseDurationSeconds", 0))
    if op.get("release"):
        if current is not None and holder == op["holder"]:
            spec.update(holderIdentity="", pik3sRenewEpoch=0)
        return
    if current is not None and holder not in ("", op["holder"]) and not expired:
        raise ApiStatus(409, "Conflict", f'leases.coordination.k8s.io "{op["name"]}" is held by {holder}')
    rv = str(state.get("revision", 0) + 1)
    transitions = int(spec.get("leaseTransitions", 0)) + (0 if holder == op["holder"] else 1)
    store[key] = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {
        "name": op["name"], "namespace": op["namespace"], "resourceVersion": rv,
        "uid": (current or {}).get("metadata", {}).get("uid") or uuid_for(f"{state.get('generation')}/lease/{key}"),
        "creationTimestamp": (current or {}).get("metadata", {}).get("creationTimestamp") or iso(now)},
        "spec": {"holderIdentity": op["holder"], "leaseDurationSeconds": op["duration"],
                 "acquireTime": spec.get("acquireTime") if holder == op["holder"] else _micro(now),
                 "renewTime": _micro(now), "leaseTransitions": transitions, "pik3sRenewEpoch": now}}


def _micro(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def apply_object_op(state: dict[str, Any], op: dict[str, Any]) -> None:
    """The datastore's side of object writes (run by the leader inside a commit)."""
    objects = state.setdefault("objects", {})
    store = objects.setdefault(op["res"], {})
    key = op["key"]
    plural = op["plural"] + (f".{op['group']}" if op["group"] else "")
    if op["op"] == "object_delete":
        if key not in store:
            raise ApiStatus(404, "NotFound", f'{plural} "{op["name"]}" not found')
        if op["kind"] == "Namespace" and not op.get("purge"):
            # Terminating until the namespace controller (Server._controllers_loop) has emptied it.
            meta = store[key]["metadata"]
            meta.setdefault("deletionTimestamp", op.get("now") or iso(time.time()))
            store[key]["status"] = {"phase": "Terminating"}
            meta["resourceVersion"] = str(state.get("revision", 0) + 1)
            return
        gone = store.pop(key)
        if op["kind"] == "Namespace":
            ns = gone["metadata"]["name"]
            for other in objects.values():
                for k in [k for k, o in other.items() if o["metadata"].get("namespace") == ns]:
                    other.pop(k)
        return
    obj = copy.deepcopy(op["obj"])
    meta = obj["metadata"]
    current = store.get(key)
    if op["mode"] == "create" and current is not None:
        raise ApiStatus(409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists',
                        {"name": meta["name"], "group": op["group"], "kind": op["plural"]})
    if op["mode"] == "update" and current is None:
        raise ApiStatus(404, "NotFound", f'{plural} "{meta["name"]}" not found')
    if op["namespaced"]:
        ns = meta["namespace"]
        namespaces = objects.get("/namespaces", {})
        if ns not in PROTECTED_NAMESPACES and ns not in namespaces:
            raise ApiStatus(404, "NotFound", f'namespaces "{ns}" not found',
                            {"name": ns, "kind": "namespaces"})
        if current is None and ns in namespaces and namespaces[ns]["metadata"].get("deletionTimestamp"):
            raise ApiStatus(403, "Forbidden", f'{plural} "{meta["name"]}" is forbidden: unable to create new '
                            f"content in namespace {ns} because it is being terminated")
    want_rv = meta.get("resourceVersion")
    if current is not None and op["mode"] == "update" and want_rv and want_rv != current["metadata"].get(
            "resourceVersion"):
        raise ApiStatus(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{meta["name"]}": the object '
                        "has been modified; please apply your changes to the latest version and try again")
    meta["uid"] = current["metadata"]["uid"] if current else uuid_for(f"{state.get('generation')}/{op['res']}/"
                                                                       f"{key}/{state.get('revision', 0)}")
    meta["creationTimestamp"] = current["metadata"]["creationTimestamp"] if current else op["now"]
    meta["resourceVersion"] = str(state.get("revision", 0) + 1)
    generation = current["metadata"].get("generation", 1) if current else 1
    if current is not None and current.get("spec") != obj.get("spec"):
        generation += 1
    meta["generation"] = generation
    store[key] = obj
    if op["kind"] == "Namespace" and current is None:  # the service-account controller's default account
        name = meta["name"]
        objects.setdefault("/serviceaccounts", {}).setdefault(f"{name}/default", {
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": name, "creationTimestamp": op["now"],
                         "uid": uuid_for(f"{meta['uid']}/default"), "resourceVersion": meta["resourceVersion"]}})


def _ago(obj: dict[str, Any]) -> str:
    return _age(obj["metadata"].get("creationTimestamp") or iso(time.time()))


def object_columns(kind: Kind) -> list[tuple[str, Any]]:
    """The columns kubectl shows for a kind (the server's Table), as (name, cell of an object)."""
    name = ("Name", lambda o: o["metadata"]["name"])
    age = ("Age", _ago)
    table: dict[str, list[tuple[str, Any]]] = {
        "Node": [name, ("Status", node_status), ("Roles", node_roles), age,
                 ("Version", lambda o: o["status"]["nodeInfo"]["kubeletVersion"]),
                 ("Internal-IP", lambda o: _address(o, "InternalIP")),
                 ("External-IP", lambda o: _address(o, "ExternalIP")),
                 ("OS-Image", lambda o: o["status"]["nodeInfo"]["osImage"] or "<unknown>"),
                 ("Kernel-Version", lambda o: o["status"]["nodeInfo"]["kernelVersion"] or "<unknown>"),
                 ("Container-Runtime", lambda o: o["status"]["nodeInfo"]["containerRuntimeVersion"])],
        "Namespace": [name, ("Status", lambda o: (o.get("status") or {}).get("phase", "Active")), age],
        "ServiceAccount": [name, ("Secrets", lambda o: str(len(o.get("secrets") or []))), age],
        "Secret": [name, ("Type", lambda o: o.get("type", "Opaque")),
                   ("Data", lambda o: str(len(o.get("data") or {}))), age],
        "ConfigMap": [name, ("Data", lambda o: str(len(o.get("data") or {}) + len(o.get("binaryData") or {}))), age],
        "ClusterRoleBinding": [name, ("Role", lambda o: f"{o['roleRef']['kind']}/{o['roleRef']['name']}"), age],
        "RoleBinding": [name, ("Role", lambda o: f"{o['roleRef']['kind']}/{o['roleRef']['name']}"), age],
        "Deployment": [name, ("Ready", lambda o: f"0/{spec(o, 'replicas', 1)}"), ("Up-to-date", lambda o: "0"),
                       ("Available", lambda o: "0"), age],
        "Job": [name, ("Status", lambda o: job_status(o)),
                ("Completions", lambda o: f"{(o.get('status') or {}).get('succeeded', 0)}/"
                                          f"{spec(o, 'completions', 1)}"), age],
        "HelmChart": [name, ("Job", lambda o: (o.get("status") or {}).get("jobName", "")),
                      ("Chart", lambda o: spec(o, "chart")), ("TargetNamespace", lambda o: spec(o, "targetNamespace")),
                      ("Version", lambda o: spec(o, "version")), ("Repo", lambda o: spec(o, "repo")),
                      ("HelmVersion", lambda o: spec(o, "helmVersion")),
                      ("Bootstrap", lambda o: spec(o, "bootstrap", False).lower())],
        "Addon": [name, ("Source", lambda o: spec(o, "source")), ("Checksum", lambda o: spec(o, "checksum"))],
    }
    return table.get(kind.kind, [name, age])


# Columns kubectl shows only with -o wide (the Table's priority 1).
WIDE_COLUMNS = {"Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"}


def _address(node: dict[str, Any], kind: str) -> str:
    return next((a["address"] for a in node["status"]["addresses"] if a["type"] == kind), "<none>")


def job_status(job: dict[str, Any]) -> str:
    conds = {c["type"]: c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
    return "Complete" if "Complete" in conds else "Failed" if "Failed" in conds else "Running"
