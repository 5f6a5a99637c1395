"""The code the five subprojects share, one home for each concept.

Each concept lives in one module and is imported by its module path
(``from shared.rasters import Scene``): this package re-exports nothing, so there is one
spelling, and importing one module never pulls in the others.

- ``shared.configs``: the one config reader (YAML profiles, ``--set``), ``REPO_ROOT`` and the
  one path rule ``resolve_path``; ``shared.runs``: the run contract (flags, run folder,
  ``cli_main``); ``shared.errors``: ``UserError``; ``shared.cli``: the command-line vocabulary;
- ``shared.atomic``: atomic writes; ``shared.images``, ``shared.rasters``: image and raster
  reading, GeoTIFF writing that keeps CRS and transform; ``shared.tiles``: the window grid;
  ``shared.engine``: the sliding-window inference engine; ``shared.cluster``: scene tasks;
- ``shared.torch_runtime``, ``shared.torch_checkpoint``, ``shared.keras_models``: device,
  precision and safe model loading (imported only by the code of that framework);
- ``shared.figures``: figure saving, learning curves, the scale bar; ``shared.results``: the
  result summaries, ``RESULTS.md`` and the reproduce log; ``shared.seed``, ``shared.stats``,
  ``shared.precision``.

Importing this package never imports torch or tensorflow (one framework per process).
"""
