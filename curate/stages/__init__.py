"""Built-in stages, one module per capability. Importing a module registers its stages."""
