# The flake's outputs. The shape (systems, attribute names) is computed from services.nix with
# builtins only, so it can be listed without nixpkgs; every value is built lazily per system.
{
  nixpkgs,
  pyproject-nix,
  uv2nix,
  pyproject-build-systems,
  ...
}:
let
  services = import ./services.nix;
  # a path (not the string self.outPath): lib.fileset and uv2nix want path values; in a flake
  # this is the flake's source in the store, which holds only git-tracked files
  workspaceRoot = ../.;

  forSystems = f: builtins.listToAttrs (map (system: {
    name = system;
    value = f system;
  }) services.systems);

  # name -> value for each service, with a suffix on the name
  perService =
    suffix: f:
    builtins.listToAttrs (
      map (name: {
        name = "${name}${suffix}";
        value = f name;
      }) services.names
    );

  # Everything built for one system; only what is asked for gets evaluated.
  build =
    system:
    let
      pkgs = nixpkgs.legacyPackages.${system};
      inherit (nixpkgs) lib;
      py = import ./python.nix {
        inherit
          pkgs
          lib
          uv2nix
          pyproject-nix
          pyproject-build-systems
          workspaceRoot
          services
          ;
      };
      images = import ./images.nix {
        inherit pkgs lib services workspaceRoot;
        inherit (py) venvs devVenvs;
      };
    in
    {
      inherit pkgs py images;
      checks = import ./checks.nix {
        inherit pkgs lib services workspaceRoot;
        inherit (py) venvs testEnv;
      };
      devShell = import ./devshell.nix {
        inherit pkgs;
        inherit (py) python;
      };
    };
  builds = forSystems build;
in
{
  packages = forSystems (
    system:
    let
      b = builds.${system};
    in
    perService "-venv" (name: b.py.venvs.${name})
    // perService "-image" (name: b.images.prod.${name})
    // perService "-dev-image" (name: b.images.dev.${name})
    // {
      host-setup = b.py.hostSetup;
      # all prod image scripts in one directory: result/<service>
      default = b.pkgs.linkFarm "sparkstack-images" (
        map (name: {
          inherit name;
          path = b.images.prod.${name};
        }) services.names
      );
    }
  );

  apps = forSystems (
    system:
    let
      hostSetup = {
        type = "app";
        program = "${builds.${system}.py.hostSetup}/bin/host-setup";
        meta.description = "Prepare a DGX Spark as the sparkstack kubeadm cluster";
      };
    in
    {
      host-setup = hostSetup;
      default = hostSetup;
    }
  );

  devShells = forSystems (system: {
    default = builds.${system}.devShell;
  });

  checks = forSystems (
    system:
    perService "-imports" (name: builds.${system}.checks."${name}-imports")
    // {
      tests = builds.${system}.checks.tests;
    }
  );

  formatter = forSystems (system: nixpkgs.legacyPackages.${system}.nixfmt);
}
