"""Sparkplug B (Eclipse Sparkplug 3.0) for the edge daemon: inputs mapped to model tags with
births tracked, and the gateway as a Sparkplug edge node. See docs/edge_daemon.md.

Modules: ``codec`` (generated protobuf classes, value mapping, topics), ``inputs`` (births →
samples), ``catalogue`` (outputs → metrics), ``node`` (the edge node's connection,
NBIRTH/NDATA/NDEATH, seq/bdSeq), ``bridge`` (what the daemon calls). The ``sparkplug:`` config
section lives in :mod:`edge_runtime.config`, which imports nothing from here.
"""
