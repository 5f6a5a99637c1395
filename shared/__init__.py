"""Thin I/O helper shared by the five subprojects.

Only what at least two subprojects need lives here, each concept in one module, imported by
its module path (``from shared.rasters import Scene``; this package re-exports nothing, so
there is one spelling and importing one module never pulls in the others):

- ``shared.configs``: the one config reader (YAML profiles, ``--set``), ``REPO_ROOT`` and the
  one path rule ``resolve_path``;
- ``shared.errors``: ``UserError``, the base class of every user error of the project;
- ``shared.runs``: the run contract (flags, run folder, ``cli_main``, the log tee);
- ``shared.atomic``: atomic writes; ``shared.images``, ``shared.rasters``: image and raster
  reading and GeoTIFF writing that keeps CRS and transform; ``shared.tiles``: the window grid;
- ``shared.figures``: figure saving, learning curves and the scale bar;
- ``shared.seed``, ``shared.stats``, ``shared.precision``, ``shared.cli``, ``shared.results``.

Importing this package never imports torch or tensorflow (one framework per process).
"""
