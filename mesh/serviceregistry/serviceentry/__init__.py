"""The ServiceEntry service registry (``pilot/pkg/serviceregistry/serviceentry``)."""
