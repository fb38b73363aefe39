"""gen: a GitOps monorepo generator with a Nix-like lockfile."""

__version__ = "0.1.0"
SCHEMA_VERSION = "gen/v1"
