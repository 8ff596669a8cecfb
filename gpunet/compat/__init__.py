"""Course code on gpunet: ``gpunet.compat.cs231n`` (Stanford CS231n's ``cs231n`` package)
and ``gpunet.compat.i2dl`` (TUM I2DL's ``exercise_code``), each a thin layer over
gpunet's own functions that keeps the course's names, defaults and conventions.
See ``docs/coming_from_courses.md``."""
