import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow 2.21's oneDNN kernels corrupt the heap ("double free or corruption", abort) on
# the tests' tiny models (32 px chunks, width x0.0625) for some batch sizes on this CPU; the
# plain Eigen kernels do not. The quick and paper profiles' shapes are not affected (checked).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
