"""The built-in self-supervised methods, one file each (mlvgm.plugins finds them by file name): SimCLR,
SimSiam and BYOL, each an nn.Module with the interface of mlvgm.plugins.Method and its registered record."""
