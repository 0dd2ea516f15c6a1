#!/usr/bin/env python3
"""Plays the container runtime for kwok pods: kwok marks pods Running, but runs
nothing. For every Running pod that matches a label selector this starts a
host process with the pod's container command and environment, resolved as a
kubelet would (envFrom ConfigMaps, env values with $(VAR) expansion, fieldRef
metadata.name/namespace and status.podIP, secretKeyRef), and SIGTERMs it when
the pod is deleted or replaced. The pod's gRPC and HTTP listen addresses
become free ports on 127.0.0.1 (and the advertised address follows), since
every process shares the host's network.

    pod_mirror.py --namespace default --selector app.kubernetes.io/component=datanode \
                  --binary target/debug/milvus-like --work DIR [--kubectl PATH]

Logs are DIR/<pod>-<uid>.log.
Runs until SIGTERM/SIGINT, then stops every process it started (SIGTERM, then
SIGKILL after 5 s). A pod that goes while it runs gets SIGTERM and its pod's
grace period, as from a kubelet.
"""

import argparse
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

running = True
# Processes told to stop, with when: reap() kills them after their grace period.
procs_stopping = []


def stop(*_):
    global running
    running = False


def free_ports(n):
    """n distinct free ports: every socket stays bound until all are chosen (one
    bound and closed at a time may be handed out twice: a query node once got
    its gRPC port as its HTTP port and exited)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def kubectl(args, opts):
    out = subprocess.run([opts.kubectl, "-n", opts.namespace, *args],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return json.loads(out.stdout)


def expand(value, env):
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: env.get(m.group(1), m.group(0)), value)


def pod_env(pod, container, opts, ports):
    """The container's environment, as the kubelet would build it."""
    env = {}
    for src in container.get("envFrom", []):
        ref = src.get("configMapRef")
        if ref:
            cm = kubectl(["get", "configmap", ref["name"], "-o", "json"], opts)
            env.update(cm.get("data", {}))
    role = container["args"][0].upper()
    for e in container.get("env", []):
        name = e["name"]
        if "value" in e:
            env[name] = expand(e["value"], env)
            continue
        source = e.get("valueFrom", {})
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            env[name] = {
                "metadata.name": pod["metadata"]["name"],
                "metadata.namespace": pod["metadata"]["namespace"],
                "status.podIP": "127.0.0.1",
            }.get(path, "")
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = kubectl(["get", "secret", ref["name"], "-o", "json"], opts)
            env[name] = base64.b64decode(secret["data"][ref["key"]]).decode()
    # Host networking: free ports instead of the container ports.
    env[f"MILVUS_LIKE_{role}_LISTEN"] = f"127.0.0.1:{ports['grpc']}"
    env[f"MILVUS_LIKE_{role}_HTTP_LISTEN"] = f"127.0.0.1:{ports['http']}"
    env[f"MILVUS_LIKE_{role}_ADVERTISE"] = f"127.0.0.1:{ports['grpc']}"
    env.setdefault("RUST_LOG", "info")
    env["MILVUS_LIKE_LOG_FORMAT"] = "text"
    return env


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--namespace", required=True)
    p.add_argument("--selector", required=True)
    p.add_argument("--binary", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--kubectl", default="kubectl")
    opts = p.parse_args()
    os.makedirs(opts.work, exist_ok=True)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    procs = {}  # uid -> {pod, proc, grpc, http, grace}
    while running:
        try:
            pods = kubectl(["get", "pods", "-l", opts.selector, "-o", "json"], opts)["items"]
        except Exception as e:  # the apiserver restarting, a timeout
            print(f"pod_mirror: listing pods failed: {e}", file=sys.stderr)
            time.sleep(1)
            continue
        live = {}
        for pod in pods:
            meta, status = pod["metadata"], pod.get("status", {})
            if status.get("phase") == "Running" and not meta.get("deletionTimestamp"):
                live[meta["uid"]] = pod
        for uid, pod in live.items():
            if uid in procs:
                continue
            name = pod["metadata"]["name"]
            container = pod["spec"]["containers"][0]
            grpc, http = free_ports(2)
            ports = {"grpc": grpc, "http": http}
            try:
                env = pod_env(pod, container, opts, ports)
            except Exception as e:
                print(f"pod_mirror: {name}: {e}", file=sys.stderr)
                continue
            log = open(os.path.join(opts.work, f"{name}-{uid[:8]}.log"), "ab")
            proc = subprocess.Popen([opts.binary, *container.get("args", [])],
                                    env={**os.environ, **env}, stdout=log, stderr=log)
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            procs[uid] = {"pod": name, "proc": proc, "grace": grace, **ports}
            print(f"pod_mirror: started {name} (pid {proc.pid}, grpc {ports['grpc']})", file=sys.stderr)
        for uid in [u for u in procs if u not in live]:
            entry = procs.pop(uid)
            if entry["proc"].poll() is None:
                entry["proc"].send_signal(signal.SIGTERM)
                print(f"pod_mirror: stopping {entry['pod']} (pid {entry['proc'].pid})", file=sys.stderr)
            procs_stopping.append((entry, time.time()))
        reap()
        time.sleep(0.3)
    # Teardown: the processes get SIGTERM and 5 s, not their pods' grace period
    # (a data node whose coordinator is already gone would wait all of it).
    for entry in procs.values():
        if entry["proc"].poll() is None:
            entry["proc"].send_signal(signal.SIGTERM)
        entry["grace"] = 5
        procs_stopping.append((entry, time.time()))
    for entry, _ in procs_stopping:
        entry["grace"] = min(entry["grace"], 5)
    while procs_stopping:
        reap()
        time.sleep(0.2)


def reap():
    """Kills what outlived its grace period, forgets what exited."""
    for item in list(procs_stopping):
        entry, since = item
        if entry["proc"].poll() is not None:
            procs_stopping.remove(item)
        elif time.time() - since > entry["grace"]:
            entry["proc"].kill()


if __name__ == "__main__":
    main()
