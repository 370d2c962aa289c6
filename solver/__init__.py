"""turbtl.solver — pseudo-spectral DNS of forced 2D turbulence (vorticity–streamfunction form)."""
