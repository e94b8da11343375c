"""Data layer: sources, one-pass decoding with cache, audit, leakage filter, splits, cells, phantoms.

``synthaug.data.prepare.prepared`` is the entry point stages use. This package module imports
nothing, so light callers (the CLI's ``data.sources``) do not load torch through it; import
:class:`~synthaug.data.imageset.ImageSet` from ``synthaug.data.imageset``.
"""
