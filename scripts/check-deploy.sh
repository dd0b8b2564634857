#!/usr/bin/env bash
# Check the Kubernetes deployment in deploy/kubernetes/ without a cluster:
#
#   1. every manifest validates, in strict mode (unknown fields are errors),
#      against the Kubernetes API schemas of the versions in KUBE_VERSIONS,
#      with kubernetes-validate (from PyPI, pinned; it carries the schemas,
#      so nothing is fetched while it runs);
#   2. the weir-plugins ConfigMap, built from the plugins this tree builds,
#      stays under a ConfigMap's 1 MiB limit (and, where kubectl is
#      installed, `kubectl kustomize` renders the whole set, which is
#      validated too);
#   3. the pieces agree: config file path and entrypoint, plugin directory
#      and its volume, probe and listener ports, the Prometheus annotations
#      and the probe port, the Secret keys the pods read, and the
#      termination grace period against shutdown_grace_ms;
#   4. the ConfigMap's weir.toml passes `weir check` (its plugin directory
#      pointed at the plugins the ConfigMap would hold, its environment
#      filled from the Secret template), so an invalid embedded config
#      fails here.
#
# Run by `make test` after `cargo test --workspace`, whose `weir` binary and
# plugins (crates/testing/build.rs) it uses; builds them when they are
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSIONS="1.32.0 1.37.0"
KUBERNETES_VALIDATE=1.37.0

log() { printf '==> %s\n' "$*" >&2; }

installed=$(python3 -c "import importlib.metadata as m; print(m.version('kubernetes-validate'))" 2>/dev/null || true)
if [[ "$installed" != "$KUBERNETES_VALIDATE" ]]; then
    log "installing kubernetes-validate $KUBERNETES_VALIDATE"
    python3 -m pip install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE" </dev/null
fi

target_dir="${CARGO_TARGET_DIR:-target}"
weir="${WEIR_BIN:-$target_dir/debug/weir}"
built_plugins="$target_dir/wasm-plugins/wasm32-wasip2/plugin"
if [[ ! -x "$weir" || ! -d "$built_plugins" ]]; then
    log "building weir and the plugins"
    cargo build -p weir --bin weir
    cargo build -p weir-testing
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

manifests=()
for file in deploy/kubernetes/*.yaml; do
    [[ "$(basename "$file")" == kustomization.yaml ]] || manifests+=("$file")
done
for version in $KUBE_VERSIONS; do
    log "validating ${#manifests[@]} manifests against Kubernetes $version (strict)"
    python3 -m kubernetes_validate --strict --quiet -k "$version" "${manifests[@]}"
done

# Everything below reads the manifests with Python (PyYAML comes with
# kubernetes-validate; tomllib with Python 3.11).
python3 - "$work" "$built_plugins" <<'EOF'
import base64, json, os, re, shutil, sys, tomllib, yaml

work, built = sys.argv[1], sys.argv[2]
root = "deploy/kubernetes"
problems = []

def load(name):
    with open(os.path.join(root, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]

def one(name, kind):
    found = [d for d in load(name) if d["kind"] == kind]
    assert len(found) == 1, f"{name}: expected one {kind}"
    return found[0]

kustomization = load("kustomization.yaml")[0]
configmap = one("configmap.yaml", "ConfigMap")
secret = one("secret.example.yaml", "Secret")
deployment = one("deployment.yaml", "Deployment")
pod = deployment["spec"]["template"]["spec"]
container = next(c for c in pod["containers"] if c["name"] == "weir")
config = tomllib.loads(configmap["data"]["weir.toml"])

# The weir-plugins ConfigMap, with the plugins this tree built.
generator = next(g for g in kustomization["configMapGenerator"] if g["name"] == "weir-plugins")
plugin_dir = os.path.join(work, "plugins")
os.makedirs(plugin_dir)
size = 0
for entry in generator["files"]:
    name = os.path.basename(entry)
    plugin = name.removesuffix(".wasm")
    source = os.path.join(built, plugin.replace("-", "_") + ".wasm")
    if not os.path.isfile(source):
        problems.append(f"{entry}: no plugin {plugin} was built here ({source})")
        continue
    shutil.copy(source, os.path.join(plugin_dir, name))
    size += len(name) + len(base64.b64encode(open(source, "rb").read()))
limit = 1 << 20
print(f"weir-plugins ConfigMap: {len(generator['files'])} plugins, {size} bytes of binaryData (limit {limit})")
# Leave room for the object's metadata.
if size > limit - 16 * 1024:
    problems.append(f"the weir-plugins ConfigMap would hold {size} bytes; a ConfigMap holds at most {limit}")
# A staged copy for `kubectl kustomize`.
staged = os.path.join(work, "kubernetes")
shutil.copytree(root, staged)
for name in os.listdir(plugin_dir):
    shutil.copy(os.path.join(plugin_dir, name), os.path.join(staged, "plugins", name))

# The pieces agree.
mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
volumes = {v["name"]: v for v in pod["volumes"]}
def mounted(predicate):
    return [mounts[name] for name, v in volumes.items() if name in mounts and predicate(v)]

entrypoint = re.search(r'^ENTRYPOINT (\[.*\])$', open("deploy/Dockerfile").read(), re.M)
config_path = json.loads(entrypoint.group(1))[-1] if entrypoint else None
config_mounts = mounted(lambda v: v.get("configMap", {}).get("name") == "weir-config")
if config_path is None or [os.path.dirname(config_path)] != config_mounts:
    problems.append(f"the image runs {config_path}, but weir-config is mounted at {config_mounts}")
if os.path.basename(config_path or "") not in configmap["data"]:
    problems.append(f"weir-config has no key {os.path.basename(config_path or '')}")
plugin_mounts = mounted(lambda v: v.get("configMap", {}).get("name") == "weir-plugins")
if [config["plugins"]["dir"]] != plugin_mounts:
    problems.append(f"[plugins] dir is {config['plugins']['dir']}, but weir-plugins is mounted at {plugin_mounts}")
if config["plugins"].get("cache_dir") not in mounted(lambda v: "emptyDir" in v):
    problems.append(f"[plugins] cache_dir {config['plugins'].get('cache_dir')} is not on a writable volume")
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
def port(address):
    return int(address.rsplit(":", 1)[1])
if port(config["admin"]["health_address"]) != ports.get("health"):
    problems.append(f"health_address {config['admin']['health_address']} is not the container port 'health' {ports.get('health')}")
if port(config["listeners"][0]["address"]) != ports.get("http"):
    problems.append(f"the listener {config['listeners'][0]['address']} is not the container port 'http' {ports.get('http')}")
# Prometheus scrapes the probe listener, where /metrics is served.
annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
scrape = (annotations.get("prometheus.io/scrape"), annotations.get("prometheus.io/port"), annotations.get("prometheus.io/path"))
if scrape != ("true", str(ports.get("health")), "/metrics"):
    problems.append(f"the pod's prometheus.io annotations say {scrape}, not ('true', '{ports.get('health')}', '/metrics')")
for probe, path in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]:
    get = container[probe]["httpGet"]
    if (get["path"], get["port"]) != (path, "health"):
        problems.append(f"{probe} asks {get['port']}{get['path']}, not health{path}")
pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
pause = int(pre_stop[-1]) if pre_stop[0] == "sleep" else 0
grace_ms = config.get("limits", {}).get("shutdown_grace_ms", 30000)
needed = pause + grace_ms / 1000
if pod["terminationGracePeriodSeconds"] <= needed:
    problems.append(
        f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} leaves no time to exit after "
        f"the {pause} s preStop pause and the {grace_ms} ms shutdown grace"
    )

# The environment the pods get, with the Secret template's placeholders.
env = {}
for var in container["env"]:
    if "value" in var:
        env[var["name"]] = var["value"]
        continue
    ref = var["valueFrom"]["secretKeyRef"]
    if ref["name"] != secret["metadata"]["name"] or ref["key"] not in secret["stringData"]:
        problems.append(f"env {var['name']} reads {ref['name']}/{ref['key']}, which the Secret template lacks")
    else:
        env[var["name"]] = secret["stringData"][ref["key"]]
wanted = {config["admin"].get("token_env"), config["admin"].get("metrics_token_env"), config.get("ai", {}).get("usage_db_env")}
wanted |= {config.get("state", {}).get("password_env")} if isinstance(config.get("state"), dict) else set()
wanted |= {s["env"] for s in config.get("secrets", {}).values() if "env" in s}
for name in sorted(w for w in wanted if w and w not in env):
    problems.append(f"weir.toml reads the environment variable {name}, which the Deployment does not set")

# The config to check: the plugin directory and compile cache moved here.
text = configmap["data"]["weir.toml"]
for key, path in [("dir", plugin_dir), ("cache_dir", os.path.join(work, "cache"))]:
    line = f'{key} = "{config["plugins"][key]}"'
    if text.count(line) != 1:
        problems.append(f"cannot find the line {line!r} in weir.toml")
    text = text.replace(line, f"{key} = {json.dumps(path)}")
with open(os.path.join(work, "weir.toml"), "w") as f:
    f.write(text)
with open(os.path.join(work, "env"), "w") as f:
    for name, value in sorted(env.items()):
        f.write(f"{name}\0{value}\0")

for p in problems:
    print(f"deploy/kubernetes: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
log "the manifests agree with each other and with deploy/Dockerfile"

if command -v kubectl >/dev/null; then
    log "rendering deploy/kubernetes with kubectl kustomize"
    kubectl kustomize "$work/kubernetes" >"$work/rendered.yaml"
    for version in $KUBE_VERSIONS; do
        python3 -m kubernetes_validate --strict --quiet -k "$version" "$work/rendered.yaml"
    done
else
    log "kubectl is not installed: the kustomization itself was not rendered"
fi

log "weir check on the ConfigMap's weir.toml"
env_args=()
while IFS= read -r -d '' name && IFS= read -r -d '' value; do
    env_args+=("$name=$value")
done <"$work/env"
env "${env_args[@]}" WEIR_LOG=warn "$weir" check "$work/weir.toml"
log "deploy/kubernetes is consistent and its config is valid"
