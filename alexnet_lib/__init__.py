"""alexnet_lib: AlexNet (Krizhevsky, Sutskever and Hinton, 2012) in PyTorch.

The single tested source of truth behind the book. Submodules:
``layers`` (LRN, locally connected), ``models``, ``data``, ``optim``,
``train``, ``evaluate``, ``distributed``, ``config``, ``cli``.
Importing the package imports nothing heavy; import the submodule you need.
"""
__version__ = "0.1.0"
