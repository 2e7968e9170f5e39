"""pik3s K3s simulator: TEST EQUIPMENT, NOT K3s.

The pik3s lab cannot download real K3s, so its release mirror publishes this
package, built into one executable file (a zipapp, see pik3s_lab.mirror), under
K3s's asset names. It honours the parts of K3s's interface a deployer touches
(files, flags, config merging, token format and CA-hash check, node passwords,
critical-config checks between servers, quorum, kubectl, etcd snapshots) and is
strict wherever K3s is strict. It runs no containers and no Kubernetes. Every
log line and `--version` say so.

Python standard library only: it runs on the hosts' own python3. The modules,
each importing only the ones before it:

  common       constants, paths, logging, Fatal
  yamlreader   the YAML K3s reads (config files, kubeconfigs, manifests)
  config       flags, config files and their merging
  tokens       tokens, bootstrap encryption, certificates
  host         facts about the host (CPU, arch, cgroups, addresses)
  httpclient   the HTTPS client
  nodes        node objects
  objects      the other Kubernetes objects, RBAC, service-account tokens
  datastore    the replicated datastore and its quorum
  controllers  the deploy and helm controllers, kube-vip
  kubectl      kubectl
  apiserver    the API server
  server       `k3s server`
  agent        `k3s agent`
  snapshots    `k3s etcd-snapshot`
  main         the command line
"""
