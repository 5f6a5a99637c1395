"""Crater segmentation with a ResNet-UNet and bounding boxes

Keras 3 (TensorFlow backend). See README.md.
"""
