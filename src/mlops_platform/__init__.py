"""MLOps platform for house-price prediction: data, training, serving and charts."""

__version__ = "0.1.0"
