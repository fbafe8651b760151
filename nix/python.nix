# Python package sets and virtualenvs for one system, built by uv2nix from uv.lock (the same
# lock `uv sync` uses): wheels preferred, build systems from pyproject-build-systems.
{
  pkgs,
  lib,
  uv2nix,
  pyproject-nix,
  pyproject-build-systems,
  workspaceRoot,
  services,
}:
let
  # uv.lock resolves wheels for every package on CPython 3.12 (aarch64 and x86_64 manylinux);
  # the project supports 3.11+.
  python = pkgs.python312;

  workspace = uv2nix.lib.workspace.loadWorkspace { inherit workspaceRoot; };

  lockOverlay = workspace.mkPyprojectOverlay { sourcePreference = "wheel"; };

  # Fix-ups for individual wheels go here (none needed so far).
  fixups = _final: _prev: { };

  pythonSet =
    (pkgs.callPackage pyproject-nix.build.packages { inherit python; }).overrideScope
      (
        lib.composeManyExtensions [
          pyproject-build-systems.overlays.wheel
          lockOverlay
          fixups
        ]
      );

  servicePackages = map (name: services.services.${name}.package) services.names;

  # Dev images install the services and the workspace libraries (services.json) in editable
  # mode, pointing at /app/services/<dir>/src inside the image (where Tilt syncs the sources).
  editableMembers = builtins.attrNames services.libraries ++ servicePackages;
  editableOverlay = workspace.mkEditablePyprojectOverlay {
    root = services.appRoot;
    members = editableMembers;
  };
  # hatchling needs `editables` to build an editable wheel (PEP 660 asks the backend at build
  # time; in Nix the dependency has to be declared).
  hatchlingEditables =
    final: prev:
    lib.genAttrs editableMembers (
      name:
      prev.${name}.overrideAttrs (old: {
        nativeBuildInputs = old.nativeBuildInputs ++ final.resolveBuildSystem { editables = [ ]; };
      })
    );
  editableSet = pythonSet.overrideScope (
    lib.composeManyExtensions [
      editableOverlay
      hatchlingEditables
    ]
  );

  # One virtualenv per service with that service's dependencies only (not the workspace's).
  serviceSpec = name: { ${services.services.${name}.package} = [ ]; };
in
{
  inherit python pythonSet workspace;

  venvs = lib.genAttrs services.names (
    name: pythonSet.mkVirtualEnv "${name}-env" (serviceSpec name)
  );

  devVenvs = lib.genAttrs services.names (
    name: editableSet.mkVirtualEnv "${name}-dev-env" (serviceSpec name)
  );

  hostSetup = pythonSet.mkVirtualEnv "host-setup-env" { host-setup = [ ]; };

  # Everything, with every dependency group (the test suite's environment).
  testEnv = pythonSet.mkVirtualEnv "sparkstack-test-env" workspace.deps.all;
}
