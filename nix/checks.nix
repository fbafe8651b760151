# `nix flake check`: the test suite in its own environment (uv.lock's dev group), plus a smoke
# check per service that its own virtualenv (only its dependencies) imports every module.
{
  pkgs,
  lib,
  services,
  venvs,
  testEnv,
  workspaceRoot,
}:
let
  importsCheck =
    name:
    let
      s = services.services.${name};
    in
    pkgs.runCommand "${name}-imports" { } ''
      ${venvs.${name}}/bin/python - <<'PY'
      import importlib, pkgutil
      import ${s.module} as pkg
      for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
          importlib.import_module(info.name)
      PY
      test -x ${venvs.${name}}/bin/${s.script}
      touch $out
    '';
in
lib.mapAttrs' (name: _: lib.nameValuePair "${name}-imports" (importsCheck name)) services.services
// {
  tests =
    pkgs.runCommand "sparkstack-tests"
      {
        nativeBuildInputs = [
          testEnv
          pkgs.kubectl
          pkgs.nix
          pkgs.git
        ];
      }
      ''
        cp -R ${workspaceRoot} source
        chmod -R u+w source
        cd source
        export HOME=$TMPDIR
        python -m pytest -q -p no:cacheprovider
        touch $out
      '';
}
