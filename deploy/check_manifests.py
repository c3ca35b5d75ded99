"""What a schema cannot see in deploy/kubernetes: the rules the manifests and the Dockerfile keep
between them. Run by deploy/validate.sh (PyYAML from its virtualenv); prints each problem and
exits 1 if there is one.

- every pod runs as non-root, with a read-only root filesystem, no privilege escalation and no
  capabilities;
- a Deployment's terminationGracePeriodSeconds exceeds its preStop sleep plus calmline's drain
  timeout (--drain-timeout-s / CALMLINE_DRAIN_TIMEOUT_S, 10 s by default), so the drain ends
  before the SIGKILL;
- an Indexed Job's `--shard $(JOB_COMPLETION_INDEX)/N` has N equal to its completions, and each
  index writes its own --out (otherwise conversations are lost, or shards overwrite each other);
- the programs the manifests run (command, exec probes) are where the Dockerfile puts them, and
  the container ports are the ones it EXPOSEs.
"""

import pathlib
import re
import sys

import yaml

DEFAULT_DRAIN_S = 10  # src/config.rs, ServeArgs::drain_timeout_s
INDEX = "$(JOB_COMPLETION_INDEX)"


def flag(args, name):
    """The value of `--name V` or `--name=V` in an argument list, or None."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def check(path, doc, dockerfile, problems):
    where = f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    kind = doc.get("kind")
    if kind not in ("Deployment", "Job"):
        return
    spec = doc["spec"]
    pod = spec["template"]["spec"]
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"{where}: the pod's securityContext lacks runAsNonRoot: true")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: container {c['name']}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: container {c['name']}: allowPrivilegeEscalation is not false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"{where}: container {c['name']}: capabilities do not drop ALL")
        programs = [c["command"][0]] if c.get("command") else []
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if "exec" in c.get(probe, {}):
                programs.append(c[probe]["exec"]["command"][0])
        for program in sorted(set(programs)):
            if not re.search(rf"^COPY\b.*\s{re.escape(program)}\s*$", dockerfile, re.M):
                problems.append(f"{where}: container {c['name']} runs {program}, which the Dockerfile does not COPY there")
        exposed = {int(p) for line in re.findall(r"^EXPOSE\s+(.*)$", dockerfile, re.M) for p in line.split()}
        for port in c.get("ports", []):
            if port["containerPort"] not in exposed:
                problems.append(f"{where}: container port {port['containerPort']} is not EXPOSEd by the Dockerfile")
        args = c.get("args", [])
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        if kind == "Deployment":
            drain = flag(args, "--drain-timeout-s") or env.get("CALMLINE_DRAIN_TIMEOUT_S") or DEFAULT_DRAIN_S
            sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if grace <= int(drain) + sleep:
                problems.append(f"{where}: terminationGracePeriodSeconds {grace} is not above preStop sleep {sleep} s + drain {drain} s")
        if kind == "Job" and spec.get("completionMode") == "Indexed":
            shard = flag(args, "--shard")
            out = flag(args, "--out")
            expected = f"{INDEX}/{spec.get('completions')}"
            if shard != expected:
                problems.append(f"{where}: --shard is {shard!r}, expected {expected!r} (N must equal completions)")
            if out is None or INDEX not in out:
                problems.append(f"{where}: --out {out!r} is not per index (it must contain {INDEX})")


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    dockerfile = (root / "Dockerfile").read_text()
    problems = []
    files = sorted((root / "deploy" / "kubernetes").rglob("*.y*ml"))
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                check(path.relative_to(root), doc, dockerfile, problems)
    for p in problems:
        print(f"ERROR {p}")
    if problems:
        return 1
    print(f"INFO {len(files)} manifests keep the rules of deploy/check_manifests.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
