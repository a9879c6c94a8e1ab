"""eenn: post-training augmentation of Keras classifiers into Early-Exit Neural Networks."""

__version__ = "0.1.0"
