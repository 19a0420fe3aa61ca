"""Data: image folders on disk to decoded tensors, and the checks that guard them.

images (decoding any image PIL reads), manifest (scanning both domains), checks (the
great-expectations data checks of the validate stage), cache (decoding once into uint8
tensors), pools (the decoded splits), batch and augment (what a training step gets), demo and
shifts (the embedded demo domains and the hard-shift suite).

Imports: adaptflow.core.
"""
