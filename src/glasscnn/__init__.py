"""glasscnn: convolutional networks in NumPy in which nothing is a black box."""

__version__ = "0.1.0"
