"""The code-shape rule of the trainers and predictors: no function over 80 lines.

Applies to every train, predict, inference, evaluate, trainer, chunk, survey and reproduce
module of the five subprojects (tests excluded), so each reads as its recipe.
"""

import ast

from shared.configs import REPO_ROOT as ROOT

SUBPROJECTS = ("mars_cracknet", "dune_vlm", "s5mars_ssl", "crater_resunet", "ice_patch_cnn")
KINDS = ("train", "predict", "inference", "evaluate", "trainer", "chunk", "survey", "reproduce")
LIMIT = 80


def test_no_long_functions_in_recipe_modules():
    checked, long = 0, []
    for sub in SUBPROJECTS:
        for path in sorted((ROOT / sub).rglob("*.py")):
            if "tests" in path.parts or not any(k in path.stem for k in KINDS):
                continue
            checked += 1
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > LIMIT:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n})")
    assert checked >= 15
    assert not long, "functions over 80 lines: " + "; ".join(long)
