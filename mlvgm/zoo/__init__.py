"""The commands behind the generators mlvgm trains itself and ships (their code and weights live in
mlvgm.generators, beside the others, so that `load_generator("embedded")` needs nothing from here):

    python -m mlvgm.zoo.train      train the embedded hierarchical VAE (mlvgm.generators.hvae) on the shapes world
    python -m mlvgm.zoo.evidence   judge it against real images: a factor classifier's verdict, Frechet distance,
                                   precision/recall, reconstructions, which level carries what, per-level KL
    python -m mlvgm.zoo.control    the positive control for quantification's under-used verdict
"""
