"""HiRISE ice-patch survey with a small Xception classifier

Keras 3 (TensorFlow backend). See README.md.
"""
