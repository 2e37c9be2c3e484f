"""Every Pod the operator and the chart create meets the Pod Security Standard
``restricted`` (DESIGN §9, §11), plus our own rule: a read-only root filesystem.

``restricted_violations`` is the check, written from the field list of the standard
(https://kubernetes.io/docs/concepts/security/pod-security-standards/, "Baseline" and
"Restricted" tables); each message names the field it is about. It runs on the pod
templates of the operator's builders (every child of a ChromaCluster, under several
specs, and IndexJob Jobs) and of ``helm template`` with each values file. The API
server's own PodSecurity admission is asked the same question in
``tests/controlplane/test_pod_security.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chroma_operator import constants as c
from chroma_operator.manifests import build_children, build_job

from .test_chart import CI_VALUES, render, values_id

Body = dict[str, Any]

# Restricted, "Volume Types": spec.volumes[*] may only be of these types.
ALLOWED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}
# Baseline, "Sysctls": the safe set.
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
}
SECCOMP_OK = {"RuntimeDefault", "Localhost"}


def _containers(pod: Body) -> Iterator[tuple[str, Body]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for ctr in pod.get(field) or []:
            yield f"spec.{field}[{ctr.get('name')}]", ctr


def _baseline(pod: Body, psc: Body) -> list[str]:
    out = []
    for host in ("hostNetwork", "hostPID", "hostIPC"):  # Host Namespaces
        if pod.get(host):
            out.append(f"spec.{host} must be false")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):  # HostProcess
        out.append("spec.securityContext.windowsOptions.hostProcess must be false")
    for sysctl in psc.get("sysctls") or []:  # Sysctls
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"spec.securityContext.sysctls: {sysctl.get('name')} is not safe")
    if (psc.get("seLinuxOptions") or {}).get("user") or (psc.get("seLinuxOptions") or {}).get(
        "role"
    ):  # SELinux
        out.append("spec.securityContext.seLinuxOptions user/role must be unset")
    for where, ctr in _containers(pod):
        sc = ctr.get("securityContext") or {}
        if sc.get("privileged"):  # Privileged Containers
            out.append(f"{where}.securityContext.privileged must be false")
        if sc.get("procMount", "Default") != "Default":  # /proc Mount Type
            out.append(f"{where}.securityContext.procMount must be Default")
        for port in ctr.get("ports") or []:  # Host Ports
            if port.get("hostPort"):
                out.append(f"{where}.ports[*].hostPort must be unset or 0")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":  # AppArmor
            out.append(f"{where}.securityContext.appArmorProfile must not be Unconfined")
    return out


def restricted_violations(pod: Body) -> list[str]:
    """What in the pod spec ``pod`` breaks PSS ``restricted`` (baseline included) or our
    read-only-root rule; empty when it meets them all."""
    psc = pod.get("securityContext") or {}
    out = _baseline(pod, psc)
    for vol in pod.get("volumes") or []:  # Volume Types
        kinds = set(vol) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            out.append(f"spec.volumes[{vol.get('name')}]: type {sorted(kinds)} not allowed")
    if psc.get("runAsUser") == 0:  # Running as Non-root user
        out.append("spec.securityContext.runAsUser must not be 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_OK:  # Seccomp
        out.append("spec.securityContext.seccompProfile.type must be RuntimeDefault/Localhost")
    for where, ctr in _containers(pod):
        sc = ctr.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:  # Privilege Escalation
            out.append(f"{where}.securityContext.allowPrivilegeEscalation must be false")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))  # Running as Non-root
        if non_root is not True:
            out.append(f"{where}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:  # Running as Non-root user
            out.append(f"{where}.securityContext.runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)  # Seccomp
        if seccomp not in SECCOMP_OK:
            out.append(f"{where}: seccompProfile.type must be RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}  # Capabilities
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{where}.securityContext.capabilities.drop must include ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{where}.securityContext.capabilities.add: only NET_BIND_SERVICE")
        if sc.get("readOnlyRootFilesystem") is not True:  # ours (DESIGN §9), not the PSS
            out.append(f"{where}.securityContext.readOnlyRootFilesystem must be true")
    return out


def pod_templates(objs: list[Body]) -> Iterator[tuple[str, Body]]:
    """(kind/name, pod spec) of every Pod, Deployment, StatefulSet and Job in ``objs``."""
    for obj in objs:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "Pod":
            yield name, obj["spec"]
        elif obj["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet"):
            yield name, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            yield name, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]


# -- The check itself can fail -----------------------------------------------------------


def test_the_check_names_each_broken_rule() -> None:
    bad = {
        "hostNetwork": True,
        "securityContext": {"runAsUser": 0},
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [
            {"name": "x", "ports": [{"containerPort": 80, "hostPort": 80}],
             "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}},
        ],
    }
    problems = "\n".join(restricted_violations(bad))
    for expected in (
        "spec.hostNetwork", "spec.volumes[h]", "spec.securityContext.runAsUser",
        "privileged", "hostPort", "allowPrivilegeEscalation", "runAsNonRoot",
        "seccompProfile", "capabilities.drop", "capabilities.add", "readOnlyRootFilesystem",
    ):
        assert expected in problems, expected


def test_the_check_accepts_a_restricted_pod() -> None:
    good = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "containers": [{"name": "x", "securityContext": {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}}],
    }
    assert restricted_violations(good) == []


# -- The operator's builders -------------------------------------------------------------


def cluster(**spec: Any) -> Body:
    base: Body = {
        "storage": {"url": "s3://b/p", "credentialsSecret": {"name": "s3"}},
        "database": {"secret": {"name": "pg"}},
    }
    base.update(spec)
    return {
        "apiVersion": c.API_VERSION, "kind": c.CLUSTER_KIND,
        "metadata": {"name": "demo", "namespace": "ml", "uid": "u1", "generation": 1},
        "spec": base,
    }


SPECS = {
    "defaults": {},
    "auth-off": {"auth": {"enabled": False}},
    "named-keys": {"auth": {"secretName": "mine"}},
    "external-qdrant": {"qdrant": {"mode": "External", "url": "http://q:6333"}},
    "suspended-with-ingress": {"suspend": True, "api": {"ingress": {"enabled": True}}},
}


def operator_objects(spec: Body) -> list[Body]:
    body = cluster(**spec)
    indexjob = {
        "apiVersion": c.API_VERSION, "kind": c.INDEXJOB_KIND,
        "metadata": {"name": "ij", "namespace": "ml", "uid": "u2"},
        "spec": {"cluster": "demo", "operation": "index", "embeddingSet": "k" * 40},
    }
    return [*build_children(body)[0], build_job(indexjob, body)]


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_every_operator_pod_is_restricted(spec: Body) -> None:
    templates = dict(pod_templates(operator_objects(spec)))
    assert {name.split("/")[0] for name in templates} >= {"Deployment", "Job"}
    for name, pod in templates.items():
        assert restricted_violations(pod) == [], name
        mounts = {m["mountPath"] for ctr in pod["containers"] for m in ctr["volumeMounts"]}
        assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"


# -- The chart ---------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=values_id)
def test_every_chart_pod_is_restricted(values: Any) -> None:
    """``render`` skips, saying why, when there is no helm binary."""
    docs = render(*(["-f", str(values)] if values else []))
    templates = dict(pod_templates(docs))
    assert any(name.startswith("Deployment/") for name in templates)
    for name, pod in templates.items():
        assert restricted_violations(pod) == [], name
