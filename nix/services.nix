# The deployable services and their images, read from services.json: the one file that also
# feeds the manifests (image names, ports) and the Tiltfile.
#
# Pure on purpose (builtins only, no nixpkgs), so it evaluates offline:
#   nix-instantiate --eval --strict nix/services.nix -A names
let
  spec = builtins.fromJSON (builtins.readFile ../services.json);

  # Where the dev images keep the workspace sources (editable installs point here, and
  # Tilt's live update syncs into it). Owned by the image's user, so it is writable.
  appRoot = "/app";
  # workspace library package -> its directory (sparkstack-common, sparkstack-console)
  libraries = spec.libraries;

  user = {
    uid = 1000;
    gid = 1000;
    name = "app";
  };

  imageOf = name: tag: rec {
    repository = "${spec.image_prefix}/${name}";
    inherit tag;
    ref = "${repository}:${tag}";
  };

  service =
    name: s:
    s
    // {
      inherit name;
      # console script of the same name as the service (and its entrypoint)
      script = name;
      dir = "services/${name}";
      image = imageOf name spec.tag;
      devImage = imageOf name devTag;
      # local source directory -> directory in the dev image, for each synced tree: the
      # service's own and those of the workspace libraries it runs
      devSync = map (dir: {
        local = "${dir}/src";
        remote = "${appRoot}/${dir}/src";
      }) ([ "services/${name}" ] ++ map (l: libraries.${l}) s.libraries);
    };

  devTag = "dev";
in
{
  inherit appRoot libraries devTag user;
  imagePrefix = spec.image_prefix;
  tag = spec.tag;
  systems = [
    "aarch64-linux"
    "x86_64-linux"
  ];
  # sorted, like every attribute name list in Nix
  names = builtins.attrNames spec.services;
  services = builtins.mapAttrs service spec.services;
}
