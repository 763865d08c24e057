"""Small helpers with no home of their own (istio's ``pkg/util``)."""
