"""Shared code of the MaintainX webhook backbone, shipped to every function as a layer."""
