"""The seven assets of SPEC §6, one module per stage."""
