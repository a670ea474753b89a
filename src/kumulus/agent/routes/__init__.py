"""HTTP routes: REST (/v1/...) and the original design's aliases (/create-vm, ...)."""
