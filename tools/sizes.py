"""python tools/sizes.py TREE...: the largest modules, classes and functions (in lines) of each
checkout's tfdiffgan/, to keep the guide of STYLE.md in view (no class over ~150 lines, no
function over ~50)."""

import ast
import os
import sys


def sizes(root):
  modules, defs = [], []
  for folder, _, names in os.walk(os.path.join(root, "tfdiffgan")):
    for name in sorted(n for n in names if n.endswith(".py")):
      path = os.path.join(folder, name)
      source, rel = open(path).read(), os.path.relpath(path, root)
      modules.append((source.count("\n"), rel))
      for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
          defs.append((node.end_lineno - node.lineno + 1, isinstance(node, ast.ClassDef),
                       f"{rel}:{node.name}"))
  return sorted(modules, reverse=True), sorted(defs, reverse=True)


if __name__ == "__main__":
  for tree in sys.argv[1:] or ["."]:
    modules, defs = sizes(tree)
    print(tree)
    print("  modules:  ", ", ".join(f"{r} {n}" for n, r in modules[:6]))
    print("  classes:  ", ", ".join(f"{r} {n}" for n, c, r in [d for d in defs if d[1]][:5]))
    print("  functions:", ", ".join(f"{r} {n}" for n, c, r in [d for d in defs if not d[1]][:6]))
