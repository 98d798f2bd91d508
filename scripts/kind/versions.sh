# The versions of what the kind node image is built from (sourced by scripts/kind/*.sh).
# Kubernetes and etcd are versions.json's (what k8s-tests build, scripts/controlplane/build.sh and
# etcd.sh); the others are the versions kubeadm of that release asks for where the module proxy has
# them (kubeadm 1.37 names etcd 3.7.0 and CoreDNS 1.14.6; the proxy serves etcd 3.7.3, so the
# cluster config tells kubeadm that tag), and the newest the proxy serves otherwise.
read -r k8s etcd < <(node -p 'const v = require("./versions.json"); `${v.kubernetes.version} ${v.etcd.version}`')
K8S_VERSION=${K8S_VERSION:-$k8s}
KIND_VERSION=0.33.0
ETCD_VERSION=$etcd
unset k8s etcd
COREDNS_VERSION=1.14.6
CRICTL_VERSION=1.37.0
CNI_PLUGINS_VERSION=1.10.0
PAUSE_VERSION=3.10.2
