"""Ray deformation from 3DMM vertex motion (paper section 4.3, spec-stylenerf.md 7.3)."""
