"""Data layer: sources, one-pass decoding with cache, audit, leakage filter, splits, phantoms.

``synthaug.data.prepare.prepare_data`` is the entry point stages use; this package module stays
import-light so configuration and augmentation code can use :class:`ImageSet` without cycles.
"""

from synthaug.data.imageset import ImageSet

__all__ = ["ImageSet"]
