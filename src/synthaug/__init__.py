"""synthaug: does synthetic data from a generative model beat classical augmentation?"""

__version__ = "0.1.0"
