"""Evolution of instructions (`python -m generate.evolve IN OUT`): rewrites in depth and in breadth,
a judge of what each rewrite gained, new answers, and the failures eliminated and counted.

- `config`: the flags; `prompts` (+ `prompts/<language>.txt`): the prompts, one file per language,
  also used by `generate.select`'s complexity score; `operations`: which rewrite each example gets;
- `calls`: journaled, capped, counted calls to the model (also used by `generate.select`);
- `eliminate`: the elimination rules; `outcome`: what was kept and eliminated, the files;
- `run`: the loop; `cli`: the command line.
"""
