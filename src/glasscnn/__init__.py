"""glasscnn: convolutional networks in NumPy in which nothing is a black box."""

from glasscnn.inference import predict

__version__ = "0.1.0"

__all__ = ["__version__", "predict"]
