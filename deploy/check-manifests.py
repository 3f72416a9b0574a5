"""Policy facts of the rendered Kubernetes overlays (deploy/check runs it on each):
every Deployment has gRPC readiness and liveness probes on the health port, requests and limits, runs
as non-root with a read-only root filesystem and no privilege escalation, terminates later than the
service drains, and mounts its own TLS Secret; every service has a Service, an HPA, a PDB and a
NetworkPolicy whose gRPC ingress admits exactly the callers its allow-list names.

usage: check-manifests.py RENDERED.yaml
"""
import sys

import yaml

SERVICES = ["customer", "order", "support", "analytics", "gateway"]
# The callers each internal service's CallerPolicy admits (docs/PARTNERS.md, "TLS"), plus the CLI's jobs;
# the gateway is the partner listener (open ingress on its gRPC port).
CALLERS = {
    "customer": {"gateway", "order", "support", "analytics", "cli"},
    "order": {"gateway", "support", "analytics", "cli"},
    "support": {"gateway", "analytics", "cli"},
    "analytics": {"gateway", "cli"},
}
DRAIN_SECONDS = 10 + 5  # ServiceApp.stopLimit + the preStop pause

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


objects = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
by_kind = {}
for o in objects:
    by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o

for service in SERVICES:
    name = f"rapport-{service}"
    deployment = by_kind.get("Deployment", {}).get(name)
    check(deployment is not None, f"{name}: no Deployment")
    if deployment:
        pod = deployment["spec"]["template"]["spec"]
        check(pod.get("securityContext", {}).get("runAsNonRoot") is True, f"{name}: pod not runAsNonRoot")
        check(pod.get("terminationGracePeriodSeconds", 30) > DRAIN_SECONDS, f"{name}: grace period not longer than the drain")
        for container in pod["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                check(container.get(probe, {}).get("grpc", {}).get("port") == 8081, f"{name}: no gRPC {probe} on the health port")
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                check({"cpu", "memory"} <= set(resources.get(part, {})), f"{name}: {part} lack cpu or memory")
            security = container.get("securityContext", {})
            check(security.get("readOnlyRootFilesystem") is True, f"{name}: root filesystem not read-only")
            check(security.get("allowPrivilegeEscalation") is False, f"{name}: privilege escalation allowed")
            check("ALL" in security.get("capabilities", {}).get("drop", []), f"{name}: capabilities not dropped")
            env = {e["name"]: e for e in container.get("env", [])}
            check(f"RAPPORT_{service.upper()}_TLS_CERT" in env, f"{name}: TLS not configured")
            check("valueFrom" in env.get(f"RAPPORT_{service.upper()}_DATABASE_URL", {}), f"{name}: database URL not from a Secret")
        secrets = [v.get("secret", {}).get("secretName") for v in pod.get("volumes", [])]
        check(f"{name}-tls" in secrets, f"{name}: does not mount its own TLS Secret")
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"):
        check(name in by_kind.get(kind, {}), f"{name}: no {kind}")
    check(service in by_kind.get("Service", {}), f"{name}: no Service named {service}")
    if service in CALLERS and service in by_kind.get("Service", {}):
        # Called by other services: headless, so their round robin sees every replica.
        check(by_kind["Service"][service]["spec"].get("clusterIP") == "None", f"{name}: Service not headless")
    policy = by_kind.get("NetworkPolicy", {}).get(name)
    if policy and service in CALLERS:
        port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        admitted = set()
        for rule in policy["spec"].get("ingress", []):
            if any(p.get("port") == port for p in rule.get("ports", [])):
                check("from" in rule, f"{name}: gRPC port open to everyone")
                for source in rule.get("from", []):
                    label = source.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name", "")
                    admitted.add(label.removeprefix("rapport-"))
        check(admitted == CALLERS[service], f"{name}: gRPC ingress admits {sorted(admitted)}, allow-list is {sorted(CALLERS[service])}")
    if policy:
        check({"Ingress", "Egress"} <= set(policy["spec"].get("policyTypes", [])), f"{name}: policy does not restrict both directions")

check("rapport-bootstrap" in by_kind.get("Job", {}), "no bootstrap Job")

if failures:
    print("\n".join(f"FAIL {f}" for f in failures))
    sys.exit(1)
print(f"{sys.argv[1]}: {len(objects)} objects, policy facts hold")
