"""host-setup: turn a fresh DGX OS into the sparkstack kubeadm cluster, verify it, tear it down.

Steps (`host_setup.steps`) read facts (`host_setup.facts`: a read-only command plus a parser)
and decide operations (`host_setup.ops`) that `host_setup.runner` prints (plan) or executes
(apply) through a `Host` (`host_setup.hosts`): this machine or another over SSH. Pinned
versions live in `host_setup.versions`.
"""
