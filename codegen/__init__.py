"""Code generation: YAML config → layer graph (Algorithm 1) → Caffe prototxt."""
