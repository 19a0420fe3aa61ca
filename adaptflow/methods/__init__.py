"""Adaptation methods, one file each in this package, registered by name (`adapt.method`).

Importing the package loads no method; `method_class` and `all_methods` import every module
here on first use, so a new method is just a new file.

Imports: adaptflow.core, adaptflow.data, adaptflow.models.
"""
