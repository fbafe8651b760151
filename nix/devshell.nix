# `nix develop`: the tools of the Spark dev loop. Python itself is managed by uv as usual
# (`uv sync`, `uv run ...`), on the interpreter the images use.
{ pkgs, python }:
pkgs.mkShell {
  packages = [
    python
    pkgs.uv
    pkgs.git
    pkgs.jq
    # cluster
    pkgs.kubectl
    pkgs.kustomize
    pkgs.kubernetes-helm
    pkgs.tilt
    # containerd tooling: ctr (imports the Nix-built images), nerdctl, crictl
    pkgs.containerd
    pkgs.nerdctl
    pkgs.cri-tools
  ];
  env = {
    UV_PYTHON = python.interpreter;
    UV_PYTHON_DOWNLOADS = "never";
  };
  shellHook = ''
    unset PYTHONPATH
  '';
}
