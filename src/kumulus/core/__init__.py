"""Small shared core: sizes, usernames, SSH keys, signing, schemas. Depends on nothing of ours."""
