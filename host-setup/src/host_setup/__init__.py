"""host-setup: the kubeadm cluster on a DGX Spark. Its steps land with the host-setup issue."""
