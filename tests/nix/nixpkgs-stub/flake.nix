{
  # A stand-in for nixpkgs, for `nix flake check --no-build --override-input nixpkgs path:...` on machines
  # that cannot fetch nixpkgs (CI). It exposes exactly the attributes ../../../flake.nix uses, each as a
  # trivial derivation, so evaluation fails on a typo, a missing attribute or a type error, and nothing
  # is ever built. Add an attribute here when flake.nix starts using one.
  description = "minimal nixpkgs stand-in for evaluating grpo-suite's flake offline";

  outputs = { self }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ];
      genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);

      pkgsFor = system:
        let
          stub = name: derivation {
            inherit name system;
            builder = "/bin/sh";
            args = [ "-c" "echo stub > $out" ];
          };
          pythonPackageNames = [
            "pydantic" "tabulate" "rich" "scipy" "numpy" "nvidia-ml-py" "jsonschema" "pyarrow" "psutil"
            "tiktoken" "pytest" "nox"
          ];
          # The builders a flake uses for a package nixpkgs lacks: each checks that its argument is an attribute
          # set with the names real nixpkgs requires, and stands for a derivation.
          pythonPackages = genAttrs pythonPackageNames (n: stub "python3.12-${n}") // {
            buildPythonPackage = { pname, version, src, ... }@args:
              builtins.seq (builtins.deepSeq (map (p: p.drvPath) (args.propagatedBuildInputs or [ ])) src.drvPath)
                (stub "python3.12-${pname}-${version}");
            fetchPypi = { pname, version, hash, ... }: stub "${pname}-${version}-src";
          };
          python312 = stub "python3-3.12" // {
            # Real nixpkgs calls `f` with the package set; so does this, so unknown names fail.
            withPackages = f: builtins.seq (builtins.deepSeq (map (p: p.drvPath) (f pythonPackages)) null)
              (stub "python3-3.12-env");
          };
        in
        {
          inherit python312;
          python312Packages = pythonPackages;
          uv = stub "uv";
          ruff = stub "ruff";
          hadolint = stub "hadolint";
          docker-client = stub "docker-client";
          skopeo = stub "skopeo";
          git = stub "git";
          nixfmt-rfc-style = stub "nixfmt";
          mkShell = { packages ? [ ], shellHook ? "", ... }:
            builtins.seq (builtins.deepSeq (map (p: p.drvPath) packages) null) (stub "nix-shell");
          runCommand = name: env: script:
            builtins.seq (builtins.deepSeq (map (p: p.drvPath) (env.nativeBuildInputs or [ ])) null)
              (derivation {
                inherit name system;
                builder = "/bin/sh";
                args = [ "-c" script ];
              });
        };
    in
    {
      lib = { inherit genAttrs; };
      legacyPackages = genAttrs systems pkgsFor;
    };
}
