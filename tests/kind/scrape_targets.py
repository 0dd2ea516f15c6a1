#!/usr/bin/env python3
"""Scrapes every target the given ServiceMonitors select, as Prometheus would.

    scrape_targets.py NAMESPACE/NAME...

For each ServiceMonitor: the Services its selector matches in the namespaces it
names, their EndpointSlices, and for each endpoint (pod) the port each
`endpoints[]` entry names; GET <path> of that pod and port through the
apiserver's pod proxy (kubectl get --raw). Every target must answer with
Prometheus text. Prints "N targets (component counts)"; exits 1 naming a
target that did not answer, or when a ServiceMonitor selects nothing.
"""

import json
import subprocess
import time
import sys
from collections import Counter


def kubectl(*args: str) -> str:
    return subprocess.run(["kubectl", *args], check=True, capture_output=True, text=True).stdout


def selector_string(selector: dict) -> str:
    terms = [f"{k}={v}" for k, v in selector.get("matchLabels", {}).items()]
    for e in selector.get("matchExpressions", []):
        op = {"In": "in", "NotIn": "notin"}.get(e["operator"])
        if op:
            terms.append(f"{e['key']} {op} ({','.join(e['values'])})")
        elif e["operator"] == "Exists":
            terms.append(e["key"])
        else:
            terms.append(f"!{e['key']}")
    return ",".join(terms)


def main() -> int:
    counts = Counter()
    for ref in sys.argv[1:]:
        ns, name = ref.split("/", 1)
        sm = json.loads(kubectl("get", "servicemonitor", name, "-n", ns, "-o", "json"))
        spec = sm["spec"]
        namespaces = spec.get("namespaceSelector", {}).get("matchNames") or [ns]
        selector = selector_string(spec["selector"])
        found = 0
        for target_ns in namespaces:
            services = json.loads(kubectl("get", "services", "-n", target_ns, "-l", selector, "-o", "json"))["items"]
            for svc in services:
                slices = json.loads(kubectl(
                    "get", "endpointslices", "-n", target_ns,
                    "-l", f"kubernetes.io/service-name={svc['metadata']['name']}", "-o", "json"))["items"]
                for endpoint in spec["endpoints"]:
                    for sl in slices:
                        ports = {p.get("name"): p["port"] for p in sl.get("ports") or []}
                        if endpoint["port"] not in ports:
                            continue
                        for ep in sl.get("endpoints") or []:
                            if not ep.get("conditions", {}).get("ready", False):
                                continue
                            pod = ep["targetRef"]["name"]
                            path = endpoint.get("path", "/metrics")
                            url = f"/api/v1/namespaces/{target_ns}/pods/{pod}:{ports[endpoint['port']]}/proxy{path}"
                            body = None
                            # The pod proxy resolves the pod by name: a pod replaced
                            # a moment ago (its slice not updated yet) answers on a
                            # retry; one that never answers fails the check.
                            for attempt in range(5):
                                try:
                                    body = kubectl("get", "--raw", url)
                                    break
                                except subprocess.CalledProcessError as e:
                                    error = e.stderr.strip()
                                    time.sleep(3)
                            if body is None:
                                print(f"{ref}: {pod} did not answer {path}: {error}")
                                return 1
                            if "# TYPE" not in body:
                                print(f"{ref}: {pod}{path} is not Prometheus text")
                                return 1
                            found += 1
                            component = svc["metadata"]["labels"].get("app.kubernetes.io/component", "operator")
                            counts[component] += 1
        if found == 0:
            print(f"{ref} selects no target")
            return 1
    print(f"{sum(counts.values())} targets ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
