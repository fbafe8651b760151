"""host-setup: turn a fresh DGX OS into the sparkstack kubeadm cluster, verify it, tear it down.

Steps (`host_setup.steps`) check, plan and apply through a `Host` (`host_setup.hosts`):
this machine, another over SSH, or the simulated `ScriptedHost` (`host_setup.scripted`).
Pinned versions live in `host_setup.versions`.
"""
