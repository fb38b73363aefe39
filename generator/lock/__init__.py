"""The Nix-like lockfile: NAR hashing, the lock model, resolvers and the content store."""
