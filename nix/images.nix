# OCI images for one system: per service a prod image and a dev image (for Tilt). Both are
# dockerTools.streamLayeredImage scripts: running one streams the image tarball to stdout,
# which `ctr -n k8s.io images import -` loads into containerd (no Docker, no registry).
{
  pkgs,
  lib,
  services,
  venvs,
  devVenvs,
  workspaceRoot,
}:
let
  inherit (services) user appRoot;
  ids = "${toString user.uid}:${toString user.gid}";

  # Fixed timestamps: the same inputs give the same image, byte for byte.
  epoch = "1970-01-01T00:00:01Z";

  # Just enough /etc for a numeric non-root user that tools can name.
  etc = pkgs.runCommand "sparkstack-image-etc" { } ''
    mkdir -p $out/etc
    printf '%s\n' \
      'root:x:0:0:root:/root:/sbin/nologin' \
      '${user.name}:x:${ids}:sparkstack:/tmp:/sbin/nologin' \
      'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' > $out/etc/passwd
    printf '%s\n' 'root:x:0:' '${user.name}:x:${toString user.gid}:' 'nogroup:x:65534:' \
      > $out/etc/group
    printf 'hosts: files dns\n' > $out/etc/nsswitch.conf
  '';

  caBundle = "${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt";

  baseEnv = [
    "SSL_CERT_FILE=${caBundle}"
    "PYTHONUNBUFFERED=1"
    "PYTHONDONTWRITEBYTECODE=1"
    # the pods mount an emptyDir at /tmp; nothing else in the image is writable in prod
    "HOME=/tmp"
  ];

  labels = name: tag: {
    "org.opencontainers.image.title" = name;
    "org.opencontainers.image.version" = tag;
    "org.opencontainers.image.source" = "sparkstack";
  };

  # Prod: the service's virtualenv, CA certificates and /etc/passwd. No shell, no tar, no
  # package manager; runs as 1000:1000 with the console script as entrypoint.
  prodImage =
    name:
    let
      s = services.services.${name};
      venv = venvs.${name};
    in
    pkgs.dockerTools.streamLayeredImage {
      name = s.image.repository;
      tag = s.image.tag;
      created = epoch;
      mtime = epoch;
      contents = [
        pkgs.cacert
        etc
      ];
      extraCommands = ''
        mkdir -p tmp
        chmod 1777 tmp
      '';
      config = {
        Entrypoint = [ "${venv}/bin/${s.script}" ];
        User = ids;
        WorkingDir = "/tmp";
        Env = baseEnv ++ [ "PATH=${venv}/bin" ];
        ExposedPorts."${toString s.port}/tcp" = { };
        Labels = labels name s.image.tag;
      };
    };

  # The service's and its workspace libraries' sources, laid out as in the repository.
  devSources =
    name:
    lib.fileset.toSource {
      root = workspaceRoot;
      fileset = lib.fileset.unions (
        map (sync: workspaceRoot + "/${sync.local}") services.services.${name}.devSync
      );
    };

  # Dev: the editable virtualenv (its .pth files point into /app), the sources under /app
  # owned by 1000:1000 so live update can write them, a shell and tar for Tilt, and
  # dev-reload.py restarting the console script when a synced file changes.
  devImage =
    name:
    let
      s = services.services.${name};
      venv = devVenvs.${name};
      watchArgs = lib.concatMap (sync: [
        "--watch"
        sync.remote
      ]) s.devSync;
    in
    pkgs.dockerTools.streamLayeredImage {
      name = s.devImage.repository;
      tag = s.devImage.tag;
      created = epoch;
      mtime = epoch;
      contents = [
        pkgs.cacert
        etc
        pkgs.bashInteractive
        pkgs.coreutils
        pkgs.findutils
        pkgs.gnugrep
        pkgs.gnutar
        pkgs.gzip
        pkgs.procps
      ];
      fakeRootCommands = ''
        mkdir -p .${appRoot} tmp
        cp -R ${devSources name}/. .${appRoot}/
        chmod -R u+w .${appRoot}
        chown -R ${ids} .${appRoot}
        chmod 1777 tmp
      '';
      config = {
        Entrypoint = [
          "${venv}/bin/python"
          "${./dev-reload.py}"
        ]
        ++ watchArgs
        ++ [
          "--"
          "${venv}/bin/${s.script}"
        ];
        User = ids;
        WorkingDir = appRoot;
        Env = baseEnv ++ [ "PATH=${venv}/bin:/bin" ];
        ExposedPorts."${toString s.port}/tcp" = { };
        Labels = labels name s.devImage.tag;
      };
    };
in
{
  prod = lib.genAttrs services.names prodImage;
  dev = lib.genAttrs services.names devImage;
}
