import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
