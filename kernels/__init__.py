"""Fused kernels for mlvgm's hot paths (InfoNCE, latent perturbation).

Each op lives in kernels/<op>.py as a torch reference, its Triton kernel(s), an autograd.Function and
one public function with impl="auto" | "torch" | "compiled" | "triton"; tests/kernels/test_<op>.py and
bench/kernels/ mirror it. The counter-based random numbers the perturbation kernel needs are laid out
by mlvgm.streams so that `tl.philox` reproduces them bit for bit (tests/mlvgm/test_streams.py).
"""
