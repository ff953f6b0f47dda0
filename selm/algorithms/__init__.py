"""Pure algorithms, no I/O: preference losses, APL acquisition, LSC reward transforms, pair construction, statistics."""
