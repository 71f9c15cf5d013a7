"""The contraband filter: digests, the binary fuse structure, the signed file format, builders."""

__version__ = "0.1.0"
