"""The built-in view strategies T_z, one file each (mlvgm.plugins finds them by file name): none, random,
learned, each a T_z class and its registered mlvgm.plugins.ViewStrategy record."""
