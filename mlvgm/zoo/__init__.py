"""The commands behind the generators mlvgm trains itself and ships (their code and weights live in
mlvgm.generators, beside the others, so that `load_generator("embedded")` needs nothing from here):

    python -m mlvgm.zoo.train      train the embedded hierarchical VAE (mlvgm.generators.hvae) on the shapes world
    python -m mlvgm.zoo.evidence   judge it: samples, a shape classifier's verdict, per-level KL, the view grid
"""
