"""mesh.agent: a mini pilot-agent — writes an Envoy bootstrap for a pod and runs Envoy."""
