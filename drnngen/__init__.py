"""drnngen: Caffe code generation and genetic tuning for deep recurrent recommenders."""

__version__ = "0.1.0"
